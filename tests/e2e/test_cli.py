"""The `liveness` command line, end to end, as a user runs it."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from typer.testing import CliRunner

from liveness.cli import app
from liveness.model.identity import VGGFACE2_FILENAME

runner = CliRunner()

TINY = {
    "model": {"profile": "tiny", "image_size": 32},
    "identity": {"backbone": "none"},
    "train": {"epochs": 1, "batch_size": 4, "num_workers": 0, "log_every_steps": 1},
}


def _params(tmp_path, raw=TINY):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class TestTrain:
    def test_trains_on_smoke_data_and_writes_outputs(self, tmp_path):
        out = tmp_path / "run"
        result = runner.invoke(app, ["train", "--params", str(_params(tmp_path)), "--out", str(out),
                                     "--data", "smoke", "--smoke-count", "8", "--set", "train.epochs=2"])
        assert result.exit_code == 0, result.output
        assert "SYNTHETIC" in result.output and "identity loss L_id is dropped" in result.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary["steps"] == 4 and summary["identity_loss_dropped"] is True
        assert "held-out reconstruction: PSNR" in result.output and summary["reconstruction"]["psnr_db"] > 0
        weights = torch.load(out / "generator.pt", weights_only=True)
        assert "encoder.separation.background_head.weight" in weights

    def test_trains_from_a_npy_file(self, tmp_path):
        from liveness.data.memory import make_smoke_crops
        import numpy as np

        crops = tmp_path / "crops.npy"
        np.save(crops, make_smoke_crops(8, 32))
        result = runner.invoke(app, ["train", "--params", str(_params(tmp_path)), "--out", str(tmp_path / "run"),
                                     "--data", str(crops), "--no-progress"])
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 2

    def test_mistyped_key_fails_before_work_and_names_it(self, tmp_path):
        result = runner.invoke(app, ["train", "--params", str(_params(tmp_path)), "--out", str(tmp_path / "run"),
                                     "--set", "train.epoch=2"])
        assert result.exit_code == 2
        assert "train.epoch: unknown key" in result.output
        assert not (tmp_path / "run").exists()

    def test_missing_identity_weights_say_what_to_do(self, tmp_path):
        result = runner.invoke(app, ["train", "--params", str(_params(tmp_path)), "--out", str(tmp_path / "run"),
                                     "--data", "smoke", "--set", "identity.backbone=vggface2"])
        assert result.exit_code == 2
        assert VGGFACE2_FILENAME in result.output and "identity.backbone: none" in result.output

    def test_bad_override_syntax(self, tmp_path):
        result = runner.invoke(app, ["train", "--params", str(_params(tmp_path)), "--set", "train.epochs"])
        assert result.exit_code == 2 and "KEY=VALUE" in result.output

    def test_missing_curated_data_says_to_run_curation(self, tmp_path):
        raw = {**TINY, "train": {**TINY["train"], "data": str(tmp_path / "nowhere")}}
        result = runner.invoke(app, ["train", "--params", str(_params(tmp_path, raw))])
        assert result.exit_code == 2 and "rerun curation" in result.output

    def test_missing_npy(self, tmp_path):
        result = runner.invoke(app, ["train", "--params", str(_params(tmp_path)), "--data", str(tmp_path / "x.npy")])
        assert result.exit_code == 2 and "x.npy not found" in result.output


class TestIdentityCommands:
    def test_fetch_from_local_copy_then_check(self, tmp_path):
        from facenet_pytorch import InceptionResnetV1

        source = tmp_path / "source.pt"
        torch.save(InceptionResnetV1(classify=False).state_dict(), source)
        destination = tmp_path / "weights" / VGGFACE2_FILENAME
        result = runner.invoke(app, ["identity", "fetch", "--dest", str(destination), "--url", source.as_uri()])
        assert result.exit_code == 0, result.output
        assert destination.is_file()
        raw = {**TINY, "identity": {"backbone": "vggface2", "weights": str(destination)}}
        result = runner.invoke(app, ["identity", "check", "--params", str(_params(tmp_path, raw))])
        assert result.exit_code == 0, result.output
        assert "vggface2, 512-d identity embedding" in result.output

    def test_fetch_without_network_is_a_clear_error(self, tmp_path):
        result = runner.invoke(app, ["identity", "fetch", "--dest", str(tmp_path / "w.pt"),
                                     "--url", (tmp_path / "absent.pt").as_uri()])
        assert result.exit_code == 2 and "could not download" in result.output

    def test_check_reports_the_stand_in(self, tmp_path):
        raw = {**TINY, "identity": {"backbone": "onet"}}
        result = runner.invoke(app, ["identity", "check", "--params", str(_params(tmp_path, raw))])
        assert result.exit_code == 0 and "offline stand-in" in result.output


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_and_the_rerun_resumes(tmp_path):
    """A real SIGINT to a running `liveness train`, then the same command again."""
    raw = {**TINY, "train": {**TINY["train"], "epochs": 200}}
    params = _params(tmp_path, raw)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "liveness", "train", "--params", str(params), "--out", str(out),
               "--data", "smoke", "--smoke-count", "8", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.exists() and '"step": 3' in metrics.read_text()):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Run the same command again to resume" in stderr
    stopped_at = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert 3 <= stopped_at < 400

    rerun = runner.invoke(app, ["train", "--params", str(params), "--out", str(out), "--no-progress",
                                "--data", "smoke", "--smoke-count", "8", "--set", "train.epochs=200"])
    assert rerun.exit_code == 0, rerun.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_step"] == stopped_at and summary["steps"] == 400
