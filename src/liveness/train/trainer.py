"""The training loop: data, DDP, checkpoints and resume, logging and progress around ``TrainingStep``."""

from __future__ import annotations

import random
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from liveness.bundle.files import GENERATOR_WEIGHTS
from liveness.config import Params
from liveness.io import atomic_write_bytes, atomic_write_json
from liveness.model.factory import build_discriminator, build_generator
from liveness.model.identity import IdentityNetwork, build_identity_network
from liveness.model.losses import LossWeights
from liveness.train.checkpoint import (
    CheckpointError,
    TrainingParts,
    atomic_torch_save,
    load_checkpoint,
    restore_training,
    training_state,
)
from liveness.train.distributed import DistributedContext, barrier, init_distributed, shutdown
from liveness.train.ema import WeightAverage
from liveness.train.metrics_logger import (
    CompositeLogger,
    JsonlMetricsLogger,
    MetricsLogger,
    active_mlflow_logger,
    flatten_params,
)
from liveness.train.progress import TrainingProgress
from liveness.model.quality import PSNR_CAP_DB, reconstruction_quality
from liveness.runtime import Runtime, images_to_model_input, resolve_runtime
from liveness.train.schedule import LossSchedule, warmup_cosine_scheduler
from liveness.train.step import TrainingStep

CHECKPOINT_NAME = "last.pt"
METRICS_LOG = "metrics.jsonl"


class TrainingDataError(ValueError):
    """The dataset cannot feed this training configuration; the message says why."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on request (Ctrl-C, SIGTERM); a checkpoint of the last whole step was written."""


@dataclass
class TrainState:
    epoch: int = 0  # epochs fully completed
    step: int = 0  # optimisation steps completed
    batch_in_epoch: int = 0  # steps completed inside the current epoch


@dataclass
class TrainingResult:
    out_dir: str
    epochs: int
    steps: int
    resumed_from_step: int | None
    identity_backbone: str
    identity_stand_in: bool
    identity_loss_dropped: bool
    final_losses: dict[str, float] = field(default_factory=dict)
    images_per_second: float | None = None
    seconds: float = 0.0
    images_seen: int = 0
    shipped_weights: str = "raw"  # "ema" when generator.pt holds the moving average of G's weights
    reconstruction: dict[str, Any] | None = None  # quality of generator.pt on the held-out crops
    losses_used: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Run:
    """One fit's objects: what ``_build`` makes, ``_resume`` restores, ``_wrap`` wraps and the epochs update."""

    dataset: Dataset
    validation: Any
    runtime: Runtime
    context: DistributedContext
    sampler: DistributedSampler
    per_rank_batch: int
    steps_per_epoch: int
    total_steps: int
    parts: TrainingParts
    identity: IdentityNetwork | None
    schedule: LossSchedule
    step_fn: TrainingStep | None = None
    logger: MetricsLogger | None = None
    latest: dict[str, float] = field(default_factory=dict)  # the last logged window of each loss
    rate: float | None = None  # images per second of that window

    @property
    def generator(self) -> torch.nn.Module:
        return self.parts.generator

    @property
    def discriminator(self) -> torch.nn.Module:
        return self.parts.discriminator

    @property
    def shipped(self) -> torch.nn.Module:
        """What generator.pt holds: the weight average when EMA is on, else G itself."""
        return self.parts.ema.module if self.parts.ema is not None else self.parts.generator


class _LossMeans:
    """Running sums of each loss over some steps, kept on the device (no sync per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for name, value in losses.items():
            self.sums[name] = self.sums[name] + value.float() if name in self.sums else value.float()
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self) -> dict[str, torch.Tensor]:
        return {name: total / self.counts[name] for name, total in self.sums.items()}

    def __bool__(self) -> bool:
        return bool(self.sums)


class _SkipFirst(Sampler[int]):
    """The wrapped sampler's indices for this epoch, minus the first ``skip`` (mid-epoch resume)."""

    def __init__(self, sampler: DistributedSampler, skip: int) -> None:
        self.sampler = sampler
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.sampler)[self.skip:])

    def __len__(self) -> int:
        return len(self.sampler) - self.skip


def _first_image(item: Any) -> Any:
    if isinstance(item, dict):
        return item["image"]
    if isinstance(item, (tuple, list)):
        return item[0]
    return item


def _collate_images(items: list[Any]) -> torch.Tensor:
    return torch.stack([torch.as_tensor(_first_image(item)) for item in items])


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps, so a checkpoint is always whole."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


_AUTO = object()


class Trainer:
    """Trains G and D on a dataset of uint8 (H, W, 3) live crops, resuming from ``out_dir`` when it can.

    Writes (rank 0 only) ``last.pt`` in ``checkpoint_dir`` (default ``out_dir/checkpoints``) every
    ``train.checkpoint_every_steps`` steps, at each epoch end and on interruption; ``metrics.jsonl``; and at
    the end ``generator.pt`` (the EMA weights when ``train.ema_decay`` > 0), ``summary.json`` (with
    ``losses_used`` and the held-out ``reconstruction`` quality) and ``train_metrics.json``.

    The learning rate warms up linearly for ``train.warmup_steps`` steps, then follows cosine annealing per
    step. D and L_id follow ``loss_schedule()``. Every schedule is a function of the step, so resume is exact.
    """

    def __init__(
        self,
        params: Params,
        out_dir: Path,
        identity: IdentityNetwork | None | object = _AUTO,
        logger: MetricsLogger | None = None,
        progress: bool = False,
        on_step_end: Callable[["Trainer", TrainState], None] | None = None,
        checkpoint_dir: Path | None = None,
    ) -> None:
        self.params = params
        self.out_dir = Path(out_dir)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else self.out_dir / "checkpoints"
        self.identity = (
            build_identity_network(params.identity.backbone, params.identity.weights, params.curate.crop.context)
            if identity is _AUTO else identity
        )
        self.extra_logger = logger
        self.show_progress = progress
        self.on_step_end = on_step_end
        self.state = TrainState()
        self.generator: torch.nn.Module | None = None
        self.discriminator: torch.nn.Module | None = None
        self.ema: WeightAverage | None = None
        self._stop = _StopRequest()

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint_dir / CHECKPOINT_NAME

    def request_stop(self) -> None:
        """Stop after the current step, writing a checkpoint (what Ctrl-C does)."""
        self._stop.requested = True

    def fit(self, dataset: Dataset, resume: bool = True, validation: Any = None) -> TrainingResult:
        """Train on ``dataset``; ``validation`` is an optional uint8 (N, H, W, 3) batch of held-out crops whose
        reconstruction quality is logged every ``train.val_every_epochs`` and written to the summary
        (``stage.validation_crops`` makes it).
        """
        train = self.params.train
        requested = resolve_runtime(train.device, train.precision)
        context = init_distributed(requested.device.type)
        runtime = resolve_runtime(train.device, train.precision, context.local_rank)
        try:
            return self._fit(dataset, resume, runtime, context, validation)
        finally:
            shutdown(context)

    def _seed_everything(self) -> None:
        seed = self.params.base.seed
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def loss_schedule(self) -> LossSchedule:
        """This run's schedule of D and L_id; a zero weight or a missing f switches a term off entirely."""
        train, loss = self.params.train, self.params.loss
        return LossSchedule(train.adversarial_start_step, train.d_every, train.identity_every,
                            adversarial_enabled=loss.adversarial > 0,
                            identity_enabled=self.identity is not None and loss.identity > 0)

    def _fit(self, dataset: Dataset, resume: bool, runtime: Runtime, context: DistributedContext,
             validation: Any) -> TrainingResult:
        started = time.perf_counter()
        run = self._build(dataset, runtime, context, validation)
        resumed_from = self._resume(run) if resume and self.checkpoint_path.exists() else None
        if resumed_from is None:
            self.state = TrainState()
        self._wrap(run)
        run.logger = self._make_logger(context)
        if run.logger is not None and resumed_from is None:
            run.logger.log_params(self._run_params(len(dataset), context))
        run.generator.train()
        run.discriminator.train()
        with self._stop, TrainingProgress(run.total_steps, self.state.step,
                                          self.show_progress and context.is_main) as bar:
            while self.state.epoch < self.params.train.epochs:
                self._run_epoch(run, bar)
                self._save_checkpoint(run)
        return self._finish(run, resumed_from, started)

    def _build(self, dataset: Dataset, runtime: Runtime, context: DistributedContext, validation: Any) -> _Run:
        """Seeded networks, optimizers, schedules and sampler of a fresh run (the RNG order is part of exact
        resume and of DDP equivalence: keep it)."""
        params, train = self.params, self.params.train
        if runtime.device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        else:
            torch.backends.cudnn.benchmark = True
        self._seed_everything()
        if train.batch_size % context.world_size:
            raise TrainingDataError(
                f"train.batch_size {train.batch_size} is the global batch and must divide evenly across "
                f"{context.world_size} ranks"
            )
        per_rank_batch = train.batch_size // context.world_size
        if len(dataset) < train.batch_size:
            raise TrainingDataError(
                f"the dataset holds {len(dataset)} crops, fewer than one batch (train.batch_size {train.batch_size})"
            )
        sampler = DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True,
                                     seed=params.base.seed, drop_last=True)
        steps_per_epoch = len(sampler) // per_rank_batch
        total_steps = steps_per_epoch * train.epochs

        profile = params.model.width_profile()
        generator = build_generator(profile).to(runtime.device, memory_format=runtime.memory_format)
        discriminator = build_discriminator(profile).to(runtime.device, memory_format=runtime.memory_format)
        identity = self.identity.to(runtime.device) if self.identity is not None else None
        fused = runtime.device.type == "cuda"
        optimizer_g = torch.optim.Adam(generator.parameters(), lr=train.lr, betas=train.betas, fused=fused)
        optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=train.lr, betas=train.betas, fused=fused)
        scheduler_g = warmup_cosine_scheduler(optimizer_g, total_steps, train.warmup_steps, train.lr, train.min_lr)
        scheduler_d = warmup_cosine_scheduler(optimizer_d, total_steps, train.warmup_steps, train.lr, train.min_lr)
        ema = WeightAverage(generator, train.ema_decay) if train.ema_decay > 0 else None
        self.generator, self.discriminator, self.ema = generator, discriminator, ema
        schedule = self.loss_schedule()
        if schedule.adversarial_enabled and schedule.adversarial_start_step >= total_steps and context.is_main:
            warnings.warn(f"train.adversarial_start_step {schedule.adversarial_start_step} is not below this run's "
                          f"{total_steps} steps, so D and the adversarial term never run (summary.json records it); "
                          f"lower it to keep all four losses", UserWarning, stacklevel=3)
        return _Run(dataset, validation, runtime, context, sampler, per_rank_batch, steps_per_epoch, total_steps,
                    TrainingParts(generator, discriminator, optimizer_g, optimizer_d, scheduler_g, scheduler_d, ema),
                    identity, schedule)

    def _resume(self, run: _Run) -> int:
        """Restore the run from ``checkpoint_path``; the step it resumes from."""
        payload = load_checkpoint(self.checkpoint_path)
        self._check_compatible(payload)
        restore_training(payload, run.parts, self.checkpoint_path)
        self.state = TrainState(payload["epoch"], payload["step"], payload["batch_in_epoch"])
        self._restore_metrics_log(run.context)
        return self.state.step

    def _wrap(self, run: _Run) -> None:
        """DDP and torch.compile around the networks, and the training step that uses them."""
        params, train, context = self.params, self.params.train, run.context
        train_generator: torch.nn.Module = run.generator
        train_discriminator: torch.nn.Module = run.discriminator
        if context.enabled:
            device_ids = [run.runtime.device.index] if run.runtime.device.type == "cuda" else None
            # The clear-face head gets no gradient on steps without L_id (see tests), so DDP must then allow
            # unused parameters.
            sometimes_unused = not run.schedule.identity_enabled or run.schedule.identity_every > 1
            train_generator = DistributedDataParallel(run.generator, device_ids=device_ids,
                                                      find_unused_parameters=sometimes_unused)
            train_discriminator = DistributedDataParallel(run.discriminator, device_ids=device_ids)
        discriminator_for_g: torch.nn.Module = run.discriminator
        if train.compile:
            train_generator = torch.compile(train_generator)
            train_discriminator = torch.compile(train_discriminator)
            discriminator_for_g = torch.compile(run.discriminator)
        parts = run.parts
        run.step_fn = TrainingStep(
            train_generator, train_discriminator, discriminator_for_g, run.identity, parts.optimizer_g,
            parts.optimizer_d, LossWeights(**params.loss.model_dump(exclude={"latent_mode"})), run.runtime,
            params.loss.latent_mode,
        )

    def _run_epoch(self, run: _Run, bar: TrainingProgress) -> None:
        """The rest of the current epoch (all of it unless resumed mid-epoch), then its epoch metrics."""
        params, train, context, parts = self.params, self.params.train, run.context, run.parts
        epoch = self.state.epoch
        run.sampler.set_epoch(epoch)
        if hasattr(run.dataset, "set_epoch"):  # per-epoch augmentation that stays exact on resume
            run.dataset.set_epoch(epoch)
        loader = DataLoader(
            run.dataset,
            batch_size=run.per_rank_batch,
            sampler=_SkipFirst(run.sampler, self.state.batch_in_epoch * run.per_rank_batch),
            drop_last=True,
            num_workers=train.num_workers,
            collate_fn=_collate_images,
            pin_memory=run.runtime.device.type == "cuda",
            generator=torch.Generator().manual_seed(params.base.seed * 100_003 + epoch),
        )
        epoch_means, window_means = _LossMeans(), _LossMeans()
        window_start, window_images = time.perf_counter(), 0
        for batch in loader:
            images = self._to_input(batch, run.runtime)
            step = self.state.step
            losses = run.step_fn(images, adversarial=run.schedule.adversarial_at(step),
                                 identity=run.schedule.identity_at(step))
            if parts.ema is not None:
                parts.ema.update(run.generator)
            lr = parts.optimizer_g.param_groups[0]["lr"]  # the rate this step used
            parts.scheduler_g.step()
            with warnings.catch_warnings():  # D may not have stepped yet (train.adversarial_start_step)
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
                parts.scheduler_d.step()
            self.state.step += 1
            self.state.batch_in_epoch += 1
            window_images += images.shape[0] * context.world_size
            window_means.add(losses)
            epoch_means.add(losses)
            if self.state.step % train.log_every_steps == 0 or self.state.batch_in_epoch == run.steps_per_epoch:
                window = self._mean_over_ranks(window_means.means(), context)
                run.latest |= window
                run.rate = window_images / max(time.perf_counter() - window_start, 1e-9)
                window_start, window_images, window_means = time.perf_counter(), 0, _LossMeans()
                if run.logger is not None:
                    run.logger.log_metrics({**window, "images_per_second": run.rate, "lr": lr,
                                            "images_seen": float(self.images_seen)}, self.state.step)
                bar.update(self.state.step, epoch + 1, window, run.rate)
            else:
                bar.update(self.state.step, epoch + 1)
            if self.state.step % train.checkpoint_every_steps == 0:
                self._save_checkpoint(run)
            if self.on_step_end is not None:
                self.on_step_end(self, self.state)
            if self._stop.requested:
                self._save_checkpoint(run)
                raise TrainingInterrupted(
                    f"training stopped at step {self.state.step}; checkpoint {self.checkpoint_path} written. "
                    f"Run the same command again to resume."
                )
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        epoch_metrics = self._mean_over_ranks(epoch_means.means(), context) if epoch_means else {}
        if run.logger is not None:
            row = {f"epoch_{name}": value for name, value in epoch_metrics.items()}
            row |= {"lr": parts.optimizer_g.param_groups[0]["lr"], "epoch": float(self.state.epoch),
                    "images_seen": float(self.images_seen)}
            if run.validation is not None and (self.state.epoch % train.val_every_epochs == 0
                                               or self.state.epoch == train.epochs):
                quality = self._held_out_quality(run)
                row |= {"psnr_db": quality.pop("psnr_db"), "ssim": quality.pop("ssim"),
                        "val_pixel_l1": quality.pop("pixel_l1"), **{f"val_{k}": v for k, v in quality.items()}}
            run.logger.log_metrics(row, self.state.step)

    def _save_checkpoint(self, run: _Run) -> None:
        if run.context.is_main:
            atomic_torch_save(training_state(run.parts, self.state.epoch, self.state.step, self.state.batch_in_epoch,
                                             self.params.model_dump(mode="json")), self.checkpoint_path)
            if self.metrics_path.is_file():  # the log travels with the checkpoint it describes
                atomic_write_bytes(self.checkpoint_dir / METRICS_LOG, self.metrics_path.read_bytes())
        barrier(run.context)

    @staticmethod
    def _held_out_quality(run: _Run) -> dict[str, float]:
        quality = reconstruction_quality(run.shipped, run.validation)
        if run.parts.ema is not None:
            raw = reconstruction_quality(run.generator, run.validation)
            quality |= {"raw_psnr_db": raw["psnr_db"], "raw_ssim": raw["ssim"], "raw_pixel_l1": raw["pixel_l1"]}
        return quality

    def _finish(self, run: _Run, resumed_from: int | None, started: float) -> TrainingResult:
        """The result, ``generator.pt`` (the EMA when on), ``summary.json`` and ``train_metrics.json``."""
        params, context, ema = self.params, run.context, run.parts.ema
        reconstruction = None
        if run.validation is not None and context.is_main:
            reconstruction = {**self._held_out_quality(run), "crops": int(len(run.validation)),
                              "weights": "ema" if ema is not None else "raw", "psnr_cap_db": PSNR_CAP_DB}
        result = TrainingResult(
            out_dir=str(self.out_dir),
            epochs=self.state.epoch,
            steps=self.state.step,
            resumed_from_step=resumed_from,
            identity_backbone=params.identity.backbone,
            identity_stand_in=bool(run.identity is not None and run.identity.stand_in),
            identity_loss_dropped=run.identity is None,
            final_losses=run.latest,
            images_per_second=run.rate,
            seconds=time.perf_counter() - started,
            images_seen=self.images_seen,
            shipped_weights="ema" if ema is not None else "raw",
            reconstruction=reconstruction,
            losses_used=self.losses_used(run.schedule, self.state.step),
        )
        if context.is_main:
            atomic_torch_save(run.shipped.state_dict(), self.out_dir / GENERATOR_WEIGHTS)
            atomic_write_json(self.out_dir / "summary.json", {**asdict(result), "params": params.model_dump(mode="json")})
            quality_metrics = {} if reconstruction is None else {
                "final_psnr_db": reconstruction["psnr_db"], "final_ssim": reconstruction["ssim"],
                "final_val_pixel_l1": reconstruction["pixel_l1"],
            }
            atomic_write_json(self.out_dir / "train_metrics.json", {  # the few numbers `dvc metrics` compares
                **{f"final_{name}": value for name, value in result.final_losses.items()},
                **quality_metrics,
                "epochs": result.epochs, "steps": result.steps, "images_per_second": result.images_per_second,
                "images_seen": result.images_seen,
            })
        barrier(context)
        return result

    @property
    def images_seen(self) -> int:
        """Training images consumed so far, over all ranks."""
        return self.state.step * self.params.train.batch_size

    def losses_used(self, schedule: LossSchedule, steps: int) -> dict[str, Any]:
        """Which of claim 8's losses this run trained with, at what weight and on how many of its steps."""
        params, identity = self.params, self.identity
        counts = schedule.steps_with(steps)
        loss = params.loss
        return {
            "pixel": {"weight": loss.pixel, "steps": counts["pixel"], "used": loss.pixel > 0},
            "adversarial": {
                "weight": loss.adversarial, "form": "non-saturating (-log D(I_real))",
                "start_step": schedule.adversarial_start_step, "every": schedule.d_every,
                "steps": counts["adversarial"], "used": counts["adversarial"] > 0,
            },
            "identity": {
                "weight": loss.identity, "every": schedule.identity_every, "steps": counts["identity"],
                "used": counts["identity"] > 0, "backbone": params.identity.backbone,
                "stand_in": bool(identity is not None and identity.stand_in),
            },
            "latent": {"weight": loss.latent, "mode": loss.latent_mode, "steps": counts["latent"],
                       "used": loss.latent > 0},
            "lr": {"peak": params.train.lr, "min": params.train.min_lr, "warmup_steps": params.train.warmup_steps,
                   "annealing": "cosine, per step"},
            "ema_decay": params.train.ema_decay,
        }

    @staticmethod
    def _mean_over_ranks(losses: dict[str, torch.Tensor], context: DistributedContext) -> dict[str, float]:
        """The losses of the global batch: each rank's mean, averaged over ranks."""
        names = sorted(losses)
        stacked = torch.stack([losses[name].float() for name in names])
        if context.enabled:
            torch.distributed.all_reduce(stacked, op=torch.distributed.ReduceOp.SUM)
            stacked /= context.world_size
        return dict(zip(names, stacked.tolist()))

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / METRICS_LOG

    def _restore_metrics_log(self, context: DistributedContext) -> None:
        """An output folder wiped between runs (``dvc repro`` does that) gets the log back from the checkpoint."""
        saved = self.checkpoint_dir / METRICS_LOG
        if context.is_main and not self.metrics_path.exists():
            atomic_write_bytes(self.metrics_path, saved.read_bytes() if saved.is_file() else b"")

    def _check_compatible(self, payload: dict[str, Any]) -> None:
        saved = payload["params"]
        current = self.params.model_dump(mode="json")
        for section in ("model", "identity"):
            if saved.get(section) != current[section]:
                raise CheckpointError(
                    f"checkpoint {self.checkpoint_path} was written with different {section} params "
                    f"({saved.get(section)} vs {current[section]}); use another output folder or pass --no-resume"
                )

    def _to_input(self, batch: torch.Tensor, runtime: Runtime) -> torch.Tensor:
        size = self.params.model.image_size
        if batch.dtype != torch.uint8 or batch.ndim != 4 or tuple(batch.shape[1:]) != (size, size, 3):
            raise TrainingDataError(
                f"training expects uint8 crops of shape ({size}, {size}, 3) (model.image_size {size}); "
                f"the dataset gave {batch.dtype} {tuple(batch.shape[1:])}"
            )
        return images_to_model_input(batch, runtime)

    def _make_logger(self, context: DistributedContext) -> MetricsLogger | None:
        if not context.is_main:
            return None
        loggers: list[MetricsLogger] = [JsonlMetricsLogger(self.metrics_path)]
        mlflow_logger = active_mlflow_logger()
        if mlflow_logger is not None:
            loggers.append(mlflow_logger)
        if self.extra_logger is not None:
            loggers.append(self.extra_logger)
        return CompositeLogger(loggers)

    def _run_params(self, dataset_size: int, context: DistributedContext) -> dict[str, Any]:
        identity = self.identity
        return {
            **flatten_params(self.params.model_dump(mode="json")),
            "identity.stand_in": bool(identity is not None and identity.stand_in),
            "identity.loss_dropped": identity is None,
            "data.size": dataset_size,
            "distributed.world_size": context.world_size,
        }
