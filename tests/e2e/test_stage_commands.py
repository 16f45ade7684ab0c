"""`liveness curate | spoof | calibrate | register`: the pipeline's stages from the command line, on tiny inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from liveness.cli import app
from liveness.data.memory import make_smoke_crops
from liveness.model.factory import build_generator
from tests.fixtures.bundles import TINY, astronaut, make_model_dir
from tests.fixtures.calibration import SIZE, spoof_rows, write_set
from tests.fixtures.registry import write_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _invoke(*arguments: str):
    return CliRunner().invoke(app, list(arguments))


def _write_params(path, raw: dict):
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_curate_gives_every_file_a_row(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(astronaut()).save(photos / "astronaut.jpg", quality=92)
    Image.fromarray(astronaut()[:, ::-1]).save(photos / "mirrored.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    params = _write_params(tmp_path / "params.yaml", {
        "curate": {"sources": [{"name": "folder", "root": str(photos)}], "out_dir": str(tmp_path / "curated"),
                   "crop": {"size": SIZE}, "detection": {"device": "cpu"},
                   "runner": {"kind": "sequential", "workers": 1}},
    })
    result = _invoke("curate", "--params", params, "--report-dir", str(tmp_path / "report"), "--no-progress")
    assert result.exit_code == 0, result.output
    manifest = pd.read_parquet(tmp_path / "curated" / "manifest.parquet")
    assert len(manifest) == 3 and f"of {len(manifest)} rows accepted" in result.output
    assert set(manifest.loc[manifest["path"].str.endswith("broken.jpg"), "reject_reason"]) != {""}
    assert (tmp_path / "report" / "summary.md").is_file()


def test_calibrate_then_register(tmp_path, monkeypatch):
    live = [("train", "live", "live", f"t{s}") for s in range(44)] + [("statistics", "live", "live", f"s{s}")
                                                                      for s in range(4)]
    live += [("val", "live", "live", f"v{s}") for s in range(6)]
    write_set(tmp_path / "live", live, make_smoke_crops(len(live), SIZE, seed=0))
    spoof = spoof_rows("calib", "c") + spoof_rows("test", "x")
    write_set(tmp_path / "spoof", spoof, make_smoke_crops(len(spoof), SIZE, seed=1))
    model_dir = tmp_path / "runs" / "train"
    model_dir.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(build_generator(TINY.width_profile()).state_dict(), model_dir / "generator.pt")
    monkeypatch.chdir(tmp_path)  # MLflow's artifacts land beside its store
    params = _write_params(tmp_path / "params.yaml", {
        "model": {"profile": "tiny", "image_size": SIZE},
        "curate": {"crop": {"size": SIZE}, "detection": {"device": "cpu"}},
        "calibrate": {"model_dir": str(model_dir), "live_data": str(tmp_path / "live"),
                      "spoof_data": str(tmp_path / "spoof"), "report_dir": str(tmp_path / "reports"),
                      "bootstrap_resamples": 20, "batch_size": 8, "device": "cpu"},
        "register": {"model_dir": str(model_dir), "metrics": str(tmp_path / "reports" / "metrics.json"),
                     "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    })
    calibrated = _invoke("calibrate", "--params", params, "--set", "calibrate.bootstrap_resamples=10")
    assert calibrated.exit_code == 0, calibrated.output
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["bootstrap"]["resamples"] == 10  # --set reached the stage
    assert f"shipped score {metrics['score']}" in calibrated.output

    registered = _invoke("register", "--params", params)
    assert registered.exit_code == 0, registered.output
    assert "liveness v1 (new version) is @challenger" in registered.output
    again = _invoke("register", "--params", params)
    assert again.exit_code == 0 and "v1 (reused (same content))" in again.output


def test_register_without_a_calibrated_model_says_what_to_run(tmp_path):
    make_model_dir(tmp_path / "model")
    params = _write_params(tmp_path / "params.yaml", {
        "register": {"model_dir": str(tmp_path / "model"), "metrics": str(tmp_path / "reports" / "metrics.json"),
                     "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}})
    result = _invoke("register", "--params", params)
    assert result.exit_code == 2 and "error:" in result.output and "metrics.json" in result.output


@pytest.mark.parametrize("command", ["curate", "spoof", "calibrate", "register"])
def test_a_bad_params_file_is_a_clear_error(tmp_path, command):
    params = _write_params(tmp_path / "params.yaml", {"calibrate": {"not_a_key": 1}})
    result = _invoke(command, "--params", params)
    assert result.exit_code == 2 and "not_a_key" in result.output


def test_write_metrics_fixture_matches_what_register_reads(tmp_path):
    """The stage commands and the registry tests share ``write_metrics``: it must stay a valid calibrate output."""
    from liveness.registry.register import read_metrics

    write_metrics(tmp_path / "metrics.json", auc=0.5)
    assert read_metrics(tmp_path / "metrics.json")["test"]["auc"] == 0.5
    assert np.isfinite(read_metrics(tmp_path / "metrics.json")["threshold"])
