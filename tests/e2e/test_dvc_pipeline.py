"""`dvc repro` end to end on a tiny copy of the project: every stage runs as a Prefect flow, a second repro
does nothing, and a calibrate param change reruns only calibrate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

TINY = {
    "demo": {"identities_live": 6, "images_per_identity": 3, "identities_spoof": 4, "live_per_spoof_subject": 2,
             "attacks_per_species": 2},
    "curate": {"crop": {"size": 64}, "runner": {"kind": "sequential"}, "splits": {"train": 0.5, "val": 0.5}},
    "spoof": {"crop": {"size": 64}, "runner": {"kind": "sequential"}},
    "model": {"profile": "tiny", "image_size": 64},
    "train": {"epochs": 1, "batch_size": 2, "num_workers": 0},
    "calibrate": {"bootstrap_resamples": 50},
}


def _merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        base[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def _project_copy(destination: Path) -> Path:
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, target)
    params = yaml.safe_load((destination / "params.yaml").read_text())
    (destination / "params.yaml").write_text(yaml.safe_dump(_merge(params, TINY), sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    return destination


def _dvc(project: Path, *arguments: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_HOME": str(project / ".prefect"), "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([str(Path(sys.executable).parent / "dvc"), *arguments], cwd=project, env=env,
                               capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


@pytest.mark.slow
def test_dvc_repro_runs_caches_and_reruns_only_what_changed(tmp_path):
    project = _project_copy(tmp_path / "project")
    first = _dvc(project, "repro")
    for stage in ("demo_data", "curate", "prepare_spoof", "train", "calibrate", "register"):
        assert f"Running stage '{stage}'" in first.stdout
    registered = json.loads((project / "reports" / "registered.json").read_text())
    assert registered["version"] == "1"
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["data"] == "synthetic" and metrics["score"] == "latent_bg"
    assert (project / "reports" / "plots" / "roc.png").is_file()
    assert (project / "dvc.lock").is_file()

    started = time.perf_counter()
    second = _dvc(project, "repro")
    assert "Running stage" not in second.stdout and "up to date" in second.stdout
    assert time.perf_counter() - started < 20  # measured about 1.3 s on 2 idle cores; CI machines are noisy

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["calibrate"]["bootstrap_resamples"] = 60
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _dvc(project, "repro")
    assert "Running stage 'calibrate'" in third.stdout
    assert "Running stage 'train'" not in third.stdout and "Running stage 'curate'" not in third.stdout

    flow = subprocess.run([sys.executable, "-m", "pipeline.flow"], cwd=project, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PREFECT_HOME": str(project / ".prefect")})
    assert flow.returncode == 0, flow.stderr[-3000:]
    assert "ran nothing" in flow.stdout  # the whole-pipeline flow wraps dvc repro, which is up to date

    shown = _dvc(project, "metrics", "show", "--json")
    assert "reports/metrics.json" in shown.stdout
    diff = _dvc(project, "params", "diff", "--all")
    assert diff.returncode == 0
