"""Interrupted training resumes to weights bit-identical to an uninterrupted run (CPU)."""

import json

import pytest
import torch

from liveness.train.checkpoint import CheckpointError
from liveness.train.trainer import Trainer, TrainingDataError, TrainingInterrupted
from tests.fixtures.params import tiny_params

# 24 crops, batch 4: 6 steps per epoch, 2 epochs = 12 steps; a periodic checkpoint every 5 steps.
PARAMS = tiny_params(train={"epochs": 2, "checkpoint_every_steps": 5})


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {**{f"g.{k}": v for k, v in trainer.generator.state_dict().items()},
            **{f"d.{k}": v for k, v in trainer.discriminator.state_dict().items()}}


def _assert_bit_identical(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    from liveness.data.memory import CropArrayDataset, make_smoke_crops

    dataset = CropArrayDataset(make_smoke_crops(24, 32, seed=3))
    trainer = Trainer(PARAMS, tmp_path_factory.mktemp("full"))
    result = trainer.fit(dataset)
    return trainer, result


def _stop_at(step: int, how: str):
    def callback(trainer: Trainer, state) -> None:
        if state.step == step:
            if how == "signal":
                trainer.request_stop()
            else:
                raise RuntimeError("simulated crash")
    return callback


class TestResume:
    def test_uninterrupted_run_trains(self, uninterrupted):
        trainer, result = uninterrupted
        assert (result.epochs, result.steps, result.resumed_from_step) == (2, 12, None)
        assert (trainer.out_dir / "generator.pt").is_file()
        summary = json.loads((trainer.out_dir / "summary.json").read_text())
        assert summary["steps"] == 12 and summary["identity_stand_in"] is True

    def test_stop_request_mid_epoch_then_resume_is_bit_identical(self, tmp_path, smoke_dataset, uninterrupted):
        with pytest.raises(TrainingInterrupted, match="step 8"):
            Trainer(PARAMS, tmp_path, on_step_end=_stop_at(8, "signal")).fit(smoke_dataset)
        resumed = Trainer(PARAMS, tmp_path)
        result = resumed.fit(smoke_dataset)
        assert result.resumed_from_step == 8 and result.steps == 12
        _assert_bit_identical(_state(resumed), _state(uninterrupted[0]))

    def test_crash_resumes_from_last_periodic_checkpoint(self, tmp_path, smoke_dataset, uninterrupted):
        with pytest.raises(RuntimeError, match="simulated crash"):
            Trainer(PARAMS, tmp_path, on_step_end=_stop_at(9, "crash")).fit(smoke_dataset)
        resumed = Trainer(PARAMS, tmp_path)
        result = resumed.fit(smoke_dataset)
        assert result.resumed_from_step == 6  # the epoch-end checkpoint after step 6 is the latest before 9
        _assert_bit_identical(_state(resumed), _state(uninterrupted[0]))

    def test_resume_of_a_finished_run_trains_nothing(self, uninterrupted, smoke_dataset):
        trainer = Trainer(PARAMS, uninterrupted[0].out_dir)
        result = trainer.fit(smoke_dataset)
        assert result.resumed_from_step == 12 and result.steps == 12
        _assert_bit_identical(_state(trainer), _state(uninterrupted[0]))

    def test_no_resume_starts_over(self, tmp_path, smoke_dataset):
        with pytest.raises(TrainingInterrupted):
            Trainer(PARAMS, tmp_path, on_step_end=_stop_at(2, "signal")).fit(smoke_dataset)
        result = Trainer(PARAMS, tmp_path).fit(smoke_dataset, resume=False)
        assert result.resumed_from_step is None and result.steps == 12


# Every schedule on: warm-up, a late and sparse D, sparse L_id, and the EMA of G.
SCHEDULED = tiny_params(train={"epochs": 2, "checkpoint_every_steps": 5, "warmup_steps": 4,
                               "adversarial_start_step": 3, "d_every": 2, "identity_every": 3, "ema_decay": 0.9})


def _scheduled_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {**_state(trainer), **{f"ema.{k}": v for k, v in trainer.ema.module.state_dict().items()}}


@pytest.fixture(scope="module")
def uninterrupted_scheduled(tmp_path_factory):
    from liveness.data.memory import CropArrayDataset, make_smoke_crops

    trainer = Trainer(SCHEDULED, tmp_path_factory.mktemp("full_scheduled"))
    trainer.fit(CropArrayDataset(make_smoke_crops(24, 32, seed=3)))
    return trainer


class TestScheduledResume:
    """Warm-up, loss schedules and EMA are functions of the step or checkpointed, so resume stays exact."""

    @pytest.mark.parametrize(("stop_step", "how", "resumed_from"), [(8, "signal", 8), (9, "crash", 6)])
    def test_resume_is_bit_identical(self, tmp_path, smoke_dataset, uninterrupted_scheduled, stop_step, how,
                                     resumed_from):
        with pytest.raises((TrainingInterrupted, RuntimeError)):
            Trainer(SCHEDULED, tmp_path, on_step_end=_stop_at(stop_step, how)).fit(smoke_dataset)
        resumed = Trainer(SCHEDULED, tmp_path)
        result = resumed.fit(smoke_dataset)
        assert result.resumed_from_step == resumed_from and result.steps == 12
        assert resumed.ema.updates == 12
        _assert_bit_identical(_scheduled_state(resumed), _scheduled_state(uninterrupted_scheduled))
        assert resumed.state.step == 12
        for optimizer in ("optimizer_g", "optimizer_d"):
            saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)[optimizer]["param_groups"]
            reference = torch.load(uninterrupted_scheduled.checkpoint_path, weights_only=True)[optimizer]
            assert saved[0]["lr"] == reference["param_groups"][0]["lr"]
        shipped = torch.load(tmp_path / "generator.pt", weights_only=True)
        _assert_bit_identical(shipped, torch.load(uninterrupted_scheduled.out_dir / "generator.pt", weights_only=True))

    def test_turning_the_average_on_mid_run_is_refused(self, tmp_path, smoke_dataset):
        with pytest.raises(TrainingInterrupted):
            Trainer(PARAMS, tmp_path, on_step_end=_stop_at(2, "signal")).fit(smoke_dataset)
        with_average = tiny_params(train={"epochs": 2, "checkpoint_every_steps": 5, "ema_decay": 0.9})
        with pytest.raises(CheckpointError, match="ema_decay 0.*--no-resume"):
            Trainer(with_average, tmp_path).fit(smoke_dataset)


class TestResumeErrors:
    def test_corrupt_checkpoint_is_a_clear_error(self, tmp_path, smoke_dataset):
        checkpoint = tmp_path / "checkpoints" / "last.pt"
        checkpoint.parent.mkdir(parents=True)
        checkpoint.write_bytes(b"PK\x03\x04 truncated")
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            Trainer(PARAMS, tmp_path).fit(smoke_dataset)

    def test_checkpoint_from_other_model_params_is_refused(self, tmp_path, smoke_dataset):
        with pytest.raises(TrainingInterrupted):
            Trainer(PARAMS, tmp_path, on_step_end=_stop_at(1, "signal")).fit(smoke_dataset)
        other = tiny_params(train={"epochs": 2}, model={"decoder_channels": 16})
        with pytest.raises(CheckpointError, match="different model params"):
            Trainer(other, tmp_path).fit(smoke_dataset)


class TestDataChecks:
    def test_wrong_crop_size_is_explained(self, tmp_path):
        from liveness.data.memory import CropArrayDataset, make_smoke_crops

        with pytest.raises(TrainingDataError, match=r"\(32, 32, 3\)"):
            Trainer(PARAMS, tmp_path).fit(CropArrayDataset(make_smoke_crops(8, 16)))

    def test_dataset_smaller_than_a_batch(self, tmp_path):
        from liveness.data.memory import CropArrayDataset, make_smoke_crops

        with pytest.raises(TrainingDataError, match="fewer than one batch"):
            Trainer(PARAMS, tmp_path).fit(CropArrayDataset(make_smoke_crops(3, 32)))


class TestCompileFlag:
    def test_compile_wraps_the_networks(self, tmp_path, smoke_dataset, monkeypatch):
        compiled = []

        def fake_compile(module, *args, **kwargs):
            compiled.append(type(module).__name__)
            return module

        monkeypatch.setattr(torch, "compile", fake_compile)
        Trainer(tiny_params(train={"compile": True}), tmp_path).fit(smoke_dataset)
        assert sorted(compiled) == ["Discriminator", "Discriminator", "Generator"]


class TestAugmentedResume:
    def test_epoch_augmentation_stays_exact_across_resume(self, tmp_path):
        """ShardDataset augmentation depends on (seed, epoch, index) only, so resume stays bit-identical."""
        import numpy as np
        import pandas as pd

        from liveness.config import AugmentParams
        from liveness.data.memory import make_smoke_crops
        from liveness.data.shards import ShardDataset, ShardWriter

        crops = make_smoke_crops(24, 32, seed=5)
        with ShardWriter(tmp_path / "shards", 32, shard_size=10) as writer:
            places = [writer.add(crop) for crop in crops]
        manifest = pd.DataFrame({
            "record_id": [f"r{i}" for i in range(24)], "source": "smoke", "path": [f"r{i}" for i in range(24)],
            "frame_index": -1, "subject": [f"s{i}" for i in range(24)], "label": "live", "species": "live",
            "split": "train", "synthetic": True, "shard": [p[0] for p in places],
            "index_in_shard": [p[1] for p in places], "reject_reason": "",
        })

        def dataset():
            return ShardDataset(manifest, tmp_path / "shards", "train", AugmentParams(), seed=0)

        augmented = dataset()
        augmented.set_epoch(0)
        first = augmented[0].numpy()
        augmented.set_epoch(1)
        assert not np.array_equal(first, augmented[0].numpy()), "augmentation must change with the epoch"

        full = Trainer(PARAMS, tmp_path / "full")
        full.fit(dataset())
        with pytest.raises(TrainingInterrupted):
            Trainer(PARAMS, tmp_path / "cut", on_step_end=_stop_at(8, "signal")).fit(dataset())
        resumed = Trainer(PARAMS, tmp_path / "cut")
        resumed.fit(dataset())
        _assert_bit_identical(_state(resumed), _state(full))

    def test_trainer_sets_each_epoch_on_the_dataset(self, tmp_path, smoke_dataset):
        seen = []
        smoke_dataset.set_epoch = seen.append
        Trainer(PARAMS, tmp_path).fit(smoke_dataset)
        assert seen == [0, 1]


class TestWipedOutputs:
    def test_finished_run_rebuilds_its_outputs_from_the_checkpoint_folder(self, tmp_path, smoke_dataset):
        """dvc repro deletes a stage's outputs before rerunning it; checkpoints kept elsewhere restore them."""
        import shutil

        checkpoints = tmp_path / "checkpoints"
        Trainer(PARAMS, tmp_path / "out", checkpoint_dir=checkpoints).fit(smoke_dataset)
        log = (tmp_path / "out" / "metrics.jsonl").read_text()
        shutil.rmtree(tmp_path / "out")
        result = Trainer(PARAMS, tmp_path / "out", checkpoint_dir=checkpoints).fit(smoke_dataset)
        assert result.resumed_from_step == 12
        assert (tmp_path / "out" / "metrics.jsonl").read_text() == log
        for name in ("generator.pt", "summary.json", "train_metrics.json"):
            assert (tmp_path / "out" / name).is_file()
