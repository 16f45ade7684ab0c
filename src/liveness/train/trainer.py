"""The training loop: data, DDP, checkpoints and resume, logging and progress around ``TrainingStep``."""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from liveness.config import Params
from liveness.io import atomic_write_bytes, atomic_write_json
from liveness.model.factory import build_discriminator, build_generator
from liveness.model.identity import IdentityNetwork, build_identity_network
from liveness.model.losses import LossWeights
from liveness.train.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointError,
    atomic_torch_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from liveness.train.distributed import DistributedContext, barrier, init_distributed, shutdown
from liveness.train.metrics_logger import (
    CompositeLogger,
    JsonlMetricsLogger,
    MetricsLogger,
    active_mlflow_logger,
    flatten_params,
)
from liveness.train.progress import TrainingProgress
from liveness.train.runtime import Runtime, images_to_model_input, resolve_runtime
from liveness.train.step import TrainingStep

CHECKPOINT_NAME = "last.pt"
GENERATOR_WEIGHTS = "generator.pt"
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
    the end ``generator.pt``, ``summary.json`` and ``train_metrics.json``.
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
            build_identity_network(params.identity.backbone, params.identity.weights) if identity is _AUTO else identity
        )
        self.extra_logger = logger
        self.show_progress = progress
        self.on_step_end = on_step_end
        self.state = TrainState()
        self.generator: torch.nn.Module | None = None
        self.discriminator: torch.nn.Module | None = None
        self._stop = _StopRequest()

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint_dir / CHECKPOINT_NAME

    def request_stop(self) -> None:
        """Stop after the current step, writing a checkpoint (what Ctrl-C does)."""
        self._stop.requested = True

    def fit(self, dataset: Dataset, resume: bool = True) -> TrainingResult:
        train = self.params.train
        requested = resolve_runtime(train.device, train.precision)
        context = init_distributed(requested.device.type)
        runtime = resolve_runtime(train.device, train.precision, context.local_rank)
        try:
            return self._fit(dataset, resume, runtime, context)
        finally:
            shutdown(context)

    def _seed_everything(self) -> None:
        seed = self.params.base.seed
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _fit(self, dataset: Dataset, resume: bool, runtime: Runtime, context: DistributedContext) -> TrainingResult:
        params, train = self.params, self.params.train
        started = time.perf_counter()
        if runtime.device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        else:
            torch.backends.cudnn.benchmark = True
        self._seed_everything()

        generator = build_generator(params.model).to(runtime.device, memory_format=runtime.memory_format)
        discriminator = build_discriminator(params.model).to(runtime.device, memory_format=runtime.memory_format)
        identity = self.identity.to(runtime.device) if self.identity is not None else None
        fused = runtime.device.type == "cuda"
        optimizer_g = torch.optim.Adam(generator.parameters(), lr=train.lr, betas=train.betas, fused=fused)
        optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=train.lr, betas=train.betas, fused=fused)
        scheduler_g = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer_g, T_max=train.epochs, eta_min=train.min_lr)
        scheduler_d = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer_d, T_max=train.epochs, eta_min=train.min_lr)
        self.generator, self.discriminator = generator, discriminator

        resumed_from = None
        if resume and self.checkpoint_path.exists():
            payload = load_checkpoint(self.checkpoint_path)
            self._check_compatible(payload)
            generator.load_state_dict(payload["generator"])
            discriminator.load_state_dict(payload["discriminator"])
            optimizer_g.load_state_dict(payload["optimizer_g"])
            optimizer_d.load_state_dict(payload["optimizer_d"])
            scheduler_g.load_state_dict(payload["scheduler_g"])
            scheduler_d.load_state_dict(payload["scheduler_d"])
            restore_rng_state(payload["rng"])
            self.state = TrainState(payload["epoch"], payload["step"], payload["batch_in_epoch"])
            resumed_from = self.state.step
            self._restore_metrics_log(context)
        else:
            self.state = TrainState()

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

        train_generator: torch.nn.Module = generator
        train_discriminator: torch.nn.Module = discriminator
        if context.enabled:
            device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            # Without f the clear-face head gets no gradient (see tests), so DDP must allow unused parameters.
            train_generator = DistributedDataParallel(generator, device_ids=device_ids,
                                                      find_unused_parameters=identity is None)
            train_discriminator = DistributedDataParallel(discriminator, device_ids=device_ids)
        discriminator_for_g: torch.nn.Module = discriminator
        if train.compile:
            train_generator = torch.compile(train_generator)
            train_discriminator = torch.compile(train_discriminator)
            discriminator_for_g = torch.compile(discriminator)
        step_fn = TrainingStep(
            train_generator, train_discriminator, discriminator_for_g, identity, optimizer_g, optimizer_d,
            LossWeights(**params.loss.model_dump(exclude={"latent_mode"})), runtime, params.loss.latent_mode,
        )

        sampler = DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True,
                                     seed=params.base.seed, drop_last=True)
        steps_per_epoch = len(sampler) // per_rank_batch
        total_steps = steps_per_epoch * train.epochs
        logger = self._make_logger(context)
        if logger is not None and resumed_from is None:
            logger.log_params(self._run_params(len(dataset), context))

        def save_checkpoint() -> None:
            if context.is_main:
                atomic_torch_save({
                    "version": CHECKPOINT_VERSION,
                    "generator": generator.state_dict(),
                    "discriminator": discriminator.state_dict(),
                    "optimizer_g": optimizer_g.state_dict(),
                    "optimizer_d": optimizer_d.state_dict(),
                    "scheduler_g": scheduler_g.state_dict(),
                    "scheduler_d": scheduler_d.state_dict(),
                    "rng": capture_rng_state(),
                    "epoch": self.state.epoch,
                    "step": self.state.step,
                    "batch_in_epoch": self.state.batch_in_epoch,
                    "params": params.model_dump(mode="json"),
                }, self.checkpoint_path)
                if self.metrics_path.is_file():  # the log travels with the checkpoint it describes
                    atomic_write_bytes(self.checkpoint_dir / METRICS_LOG, self.metrics_path.read_bytes())
            barrier(context)

        last_losses: dict[str, float] = {}
        rate: float | None = None
        generator.train()
        discriminator.train()
        with self._stop, TrainingProgress(total_steps, self.state.step, self.show_progress and context.is_main) as bar:
            while self.state.epoch < train.epochs:
                epoch = self.state.epoch
                sampler.set_epoch(epoch)
                if hasattr(dataset, "set_epoch"):  # per-epoch augmentation that stays exact on resume
                    dataset.set_epoch(epoch)
                loader = DataLoader(
                    dataset,
                    batch_size=per_rank_batch,
                    sampler=_SkipFirst(sampler, self.state.batch_in_epoch * per_rank_batch),
                    drop_last=True,
                    num_workers=train.num_workers,
                    collate_fn=_collate_images,
                    pin_memory=runtime.device.type == "cuda",
                    generator=torch.Generator().manual_seed(params.base.seed * 100_003 + epoch),
                )
                sums: dict[str, float] = {}
                counted = 0
                window_start, window_images = time.perf_counter(), 0
                for batch in loader:
                    images = self._to_input(batch, runtime)
                    losses = step_fn(images)
                    self.state.step += 1
                    self.state.batch_in_epoch += 1
                    window_images += images.shape[0] * context.world_size
                    if self.state.step % train.log_every_steps == 0 or self.state.batch_in_epoch == steps_per_epoch:
                        last_losses = self._mean_over_ranks(losses, context)
                        rate = window_images / max(time.perf_counter() - window_start, 1e-9)
                        window_start, window_images = time.perf_counter(), 0
                        for name, value in last_losses.items():
                            sums[name] = sums.get(name, 0.0) + value
                        counted += 1
                        if logger is not None:
                            logger.log_metrics({**last_losses, "images_per_second": rate}, self.state.step)
                        bar.update(self.state.step, epoch + 1, last_losses, rate)
                    else:
                        bar.update(self.state.step, epoch + 1)
                    if self.state.step % train.checkpoint_every_steps == 0:
                        save_checkpoint()
                    if self.on_step_end is not None:
                        self.on_step_end(self, self.state)
                    if self._stop.requested:
                        save_checkpoint()
                        raise TrainingInterrupted(
                            f"training stopped at step {self.state.step}; checkpoint {self.checkpoint_path} written. "
                            f"Run the same command again to resume."
                        )
                scheduler_g.step()
                scheduler_d.step()
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
                if logger is not None and counted:
                    epoch_metrics = {f"epoch_{name}": total / counted for name, total in sums.items()}
                    epoch_metrics["lr"] = optimizer_g.param_groups[0]["lr"]
                    logger.log_metrics({**epoch_metrics, "epoch": float(self.state.epoch)}, self.state.step)
                save_checkpoint()

        result = TrainingResult(
            out_dir=str(self.out_dir),
            epochs=self.state.epoch,
            steps=self.state.step,
            resumed_from_step=resumed_from,
            identity_backbone=params.identity.backbone,
            identity_stand_in=bool(identity is not None and identity.stand_in),
            identity_loss_dropped=identity is None,
            final_losses=last_losses,
            images_per_second=rate,
            seconds=time.perf_counter() - started,
        )
        if context.is_main:
            atomic_torch_save(generator.state_dict(), self.out_dir / GENERATOR_WEIGHTS)
            atomic_write_json(self.out_dir / "summary.json", {**asdict(result), "params": params.model_dump(mode="json")})
            atomic_write_json(self.out_dir / "train_metrics.json", {  # the few numbers `dvc metrics` compares
                **{f"final_{name}": value for name, value in result.final_losses.items()},
                "epochs": result.epochs, "steps": result.steps, "images_per_second": result.images_per_second,
            })
        barrier(context)
        return result

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
