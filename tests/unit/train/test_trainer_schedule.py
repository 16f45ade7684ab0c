"""The trainer follows train.warmup_steps, adversarial_start_step, d_every, identity_every and ema_decay, and
reports what it trained with (CPU, tiny widths)."""

import json

import numpy as np
import pytest
import torch

from liveness.data.memory import make_smoke_crops
from liveness.train.schedule import lr_factor
from liveness.train.trainer import Trainer
from tests.fixtures.params import tiny_params

# 24 crops, batch 4: 6 steps per epoch, 2 epochs = 12 steps (0..11).
SCHEDULED = {"epochs": 2, "lr": 1e-3, "warmup_steps": 3, "adversarial_start_step": 4, "d_every": 3,
             "identity_every": 3, "ema_decay": 0.9}
D_STEPS = [4, 7, 10]
IDENTITY_STEPS = [0, 3, 6, 9]


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if "step" in json.loads(line)]


def _snapshot(module):
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _changed(before, after):
    return any(not torch.equal(before[k], after[k]) for k in before)


@pytest.fixture(scope="module")
def scheduled_run(tmp_path_factory):
    """One run with every schedule on, recording D's weights and f's calls after each step."""
    from liveness.data.memory import CropArrayDataset

    trainer = Trainer(tiny_params(train=SCHEDULED), tmp_path_factory.mktemp("scheduled"))
    identity_calls = []
    trainer.identity.register_forward_hook(lambda *args: identity_calls.append(1))
    record = {"d": [], "identity_calls": []}

    def on_step_end(trainer, state):
        record["d"].append(_snapshot(trainer.discriminator))
        record["identity_calls"].append(len(identity_calls))

    trainer.on_step_end = on_step_end
    validation = make_smoke_crops(5, 32, seed=9)
    initial_d = _snapshot(_initial_d())
    result = trainer.fit(CropArrayDataset(make_smoke_crops(24, 32, seed=3)), validation=validation)
    return trainer, result, record, initial_d


def _initial_d():
    """D as the trainer builds it: seeded, before any step."""
    from liveness.model.factory import build_discriminator, build_generator

    torch.manual_seed(tiny_params().base.seed)
    params = tiny_params().model
    build_generator(params.width_profile())  # the trainer builds G first, from the same seed
    return build_discriminator(params.width_profile())


class TestLearningRate:
    def test_logged_rates_follow_warm_up_then_cosine(self, scheduled_run):
        trainer, *_ = scheduled_run
        rates = {row["step"]: row["lr"] for row in _rows(trainer.metrics_path) if "loss_g" in row}
        # the row of completed step k+1 carries the rate step k ran at
        expected = {k + 1: 1e-3 * lr_factor(k, 12, 3) for k in range(12)}
        assert rates == pytest.approx(expected)
        assert rates[1] == pytest.approx(1e-3 / 3) and rates[3] == pytest.approx(1e-3)


class TestDiscriminatorSchedule:
    def test_d_changes_only_on_its_scheduled_steps(self, scheduled_run):
        _, _, record, initial_d = scheduled_run
        previous = initial_d
        changed = []
        for step, after in enumerate(record["d"]):
            if _changed(previous, after):
                changed.append(step)
            previous = after
        assert changed == D_STEPS

    def test_adversarial_losses_logged_only_on_those_steps(self, scheduled_run):
        trainer, *_ = scheduled_run
        rows = [row for row in _rows(trainer.metrics_path) if "loss_g" in row]
        assert [row["step"] - 1 for row in rows if "loss_d" in row] == D_STEPS
        assert [row["step"] - 1 for row in rows if "loss_adversarial" in row] == D_STEPS

    def test_zero_adversarial_weight_never_steps_d(self, tmp_path, smoke_dataset):
        trainer = Trainer(tiny_params(loss={"adversarial": 0.0}), tmp_path)
        result = trainer.fit(smoke_dataset)
        assert not _changed(_snapshot(_initial_d()), _snapshot(trainer.discriminator))
        assert result.losses_used["adversarial"]["used"] is False
        assert "loss_d" not in result.final_losses


class TestIdentitySchedule:
    def test_f_runs_only_every_identity_every_steps(self, scheduled_run):
        _, _, record, _ = scheduled_run
        calls = np.diff([0, *record["identity_calls"]])
        assert [step for step, count in enumerate(calls) if count] == IDENTITY_STEPS
        assert set(calls[IDENTITY_STEPS]) == {2}, "f(I) and f(I_c)"


class TestWeightAverage:
    def test_generator_pt_holds_the_averaged_weights(self, scheduled_run):
        trainer, result, *_ = scheduled_run
        saved = torch.load(trainer.out_dir / "generator.pt", weights_only=True)
        averaged, raw = trainer.ema.module.state_dict(), trainer.generator.state_dict()
        assert saved.keys() == raw.keys()
        assert all(torch.equal(saved[k], averaged[k]) for k in saved)
        assert any(not torch.equal(saved[k], raw[k]) for k in saved)
        assert result.shipped_weights == "ema"

    def test_without_averaging_generator_pt_is_the_raw_generator(self, tmp_path, smoke_dataset):
        trainer = Trainer(tiny_params(), tmp_path)
        trainer.fit(smoke_dataset)
        saved = torch.load(tmp_path / "generator.pt", weights_only=True)
        assert trainer.ema is None
        assert all(torch.equal(value, trainer.generator.state_dict()[k]) for k, value in saved.items())


class TestReports:
    def test_summary_records_the_losses_used(self, scheduled_run):
        trainer, *_ = scheduled_run
        used = json.loads((trainer.out_dir / "summary.json").read_text())["losses_used"]
        assert used["pixel"] == {"weight": 50.0, "steps": 12, "used": True}
        assert used["adversarial"] | {"form": None} == {"weight": 1.0, "form": None, "start_step": 4, "every": 3,
                                                         "steps": 3, "used": True}
        assert used["identity"] == {"weight": 1.0, "every": 3, "steps": 4, "used": True, "backbone": "onet",
                                    "stand_in": True}
        assert used["latent"]["mode"] == "patent" and used["latent"]["steps"] == 12
        assert used["lr"]["warmup_steps"] == 3 and used["ema_decay"] == 0.9

    def test_held_out_quality_is_logged_each_epoch_and_summarised(self, scheduled_run):
        trainer, result, *_ = scheduled_run
        epoch_rows = [row for row in _rows(trainer.metrics_path) if "epoch" in row]
        assert [row["step"] for row in epoch_rows] == [6, 12]
        assert all({"psnr_db", "ssim", "val_pixel_l1", "val_raw_psnr_db"} <= set(row) for row in epoch_rows)
        assert result.reconstruction["crops"] == 5 and result.reconstruction["weights"] == "ema"
        assert result.reconstruction["psnr_db"] == pytest.approx(epoch_rows[-1]["psnr_db"])
        metrics = json.loads((trainer.out_dir / "train_metrics.json").read_text())
        assert metrics["final_psnr_db"] == pytest.approx(result.reconstruction["psnr_db"])
        assert {"final_ssim", "final_val_pixel_l1", "images_seen"} <= set(metrics)

    def test_every_row_counts_the_images_seen(self, scheduled_run):
        trainer, *_ = scheduled_run
        rows = _rows(trainer.metrics_path)
        assert rows and all(row["images_seen"] == row["step"] * 4 for row in rows)

    def test_without_held_out_crops_no_quality_is_reported(self, tmp_path, smoke_dataset):
        result = Trainer(tiny_params(), tmp_path).fit(smoke_dataset)
        assert result.reconstruction is None
        assert "final_psnr_db" not in json.loads((tmp_path / "train_metrics.json").read_text())


class TestScheduleWarnings:
    def test_a_start_past_the_end_of_the_run_warns(self, tmp_path, smoke_dataset):
        with pytest.warns(UserWarning, match="adversarial_start_step 50 is not below this run's 6 steps"):
            result = Trainer(tiny_params(train={"adversarial_start_step": 50}), tmp_path).fit(smoke_dataset)
        assert result.losses_used["adversarial"] | {"form": None} == {
            "weight": 1.0, "form": None, "start_step": 50, "every": 1, "steps": 0, "used": False}
