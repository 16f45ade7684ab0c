"""`dvc repro` end to end on a tiny copy of the project: every stage runs as a Prefect flow, a second repro
does nothing, and a calibrate param change reruns only calibrate. Then, on the same copy committed to git, a
`dvc exp run -S train.epochs=2` experiment, read back by `dvc exp show`, `dvc metrics diff` and `dvc params diff`.
The one expensive first repro is shared by the module. A cheap test apart from it edits a module two imports away
from a stage's entry point and checks that `dvc status` names that stage (the deps follow the code)."""

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

from pipeline.stage_deps import stage_graphs
from tests.fixtures.paths import PROJECT_ROOT

TINY = {
    "demo": {"identities_live": 8, "images_per_identity": 3, "identities_spoof": 4, "live_per_spoof_subject": 2,
             "attacks_per_species": 2},
    "curate": {"crop": {"size": 64}, "runner": {"kind": "sequential"},
               "splits": {"train": 0.5, "statistics": 0.25, "val": 0.25}},
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
    """The working tree as git sees it (tracked and new, not ignored, files) in a fresh git repository."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, check=True)
    for name in listed.stdout.splitlines():
        if not (PROJECT_ROOT / name).is_file():  # deleted in the working tree, not yet in git
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, target)
    params = yaml.safe_load((destination / "params.yaml").read_text())
    (destination / "params.yaml").write_text(yaml.safe_dump(_merge(params, TINY), sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    # dvc exp run commits; the copy must not depend on the machine's git identity.
    _git(destination, "config", "user.name", "pipeline test")
    _git(destination, "config", "user.email", "pipeline-test@example.invalid")
    return destination


def _git(project: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *arguments], cwd=project, capture_output=True, text=True, check=True)


def _env(project: Path) -> dict[str, str]:
    """The stages' environment: the venv first, offline, and every store inside the project copy."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PREFECT_HOME": str(project / ".prefect"), "TORCH_HOME": str(project / ".torch"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}", "MLFLOW_DISABLE_TELEMETRY": "true",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}


def _dvc(project: Path, *arguments: str) -> subprocess.CompletedProcess:
    completed = subprocess.run([str(Path(sys.executable).parent / "dvc"), *arguments], cwd=project,
                               env=_env(project), capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def repro(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The tiny project copy after its first `dvc repro` (about 3 minutes on 2 cores), and that repro's output."""
    project = _project_copy(tmp_path_factory.mktemp("dvc") / "project")
    return project, _dvc(project, "repro")


@pytest.mark.slow
def test_dvc_repro_runs_caches_and_reruns_only_what_changed(repro):
    project, first = repro
    for stage in ("demo_data", "curate", "prepare_spoof", "train", "calibrate", "register"):
        assert f"Running stage '{stage}'" in first.stdout
    registered = json.loads((project / "reports" / "registered.json").read_text())
    assert registered["version"] == "1"
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert metrics["data"] == "synthetic" and metrics["score"] == metrics["selection"]["chosen"]
    assert metrics["selection"]["rule"] == "worst_species_auc_1se"  # params.yaml ships score: auto
    assert metrics["test_per_species"]["replay_pc"]["unseen"] is True  # held out of calibration
    assert (project / "reports" / "score_statistics.json").is_file()
    assert (project / "reports" / "calibration_scores.md").is_file()
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
                          timeout=600, env=_env(project))
    assert flow.returncode == 0, flow.stderr[-3000:]
    assert "ran nothing" in flow.stdout  # the whole-pipeline flow wraps dvc repro, which is up to date

    shown = _dvc(project, "metrics", "show", "--json")
    assert "reports/metrics.json" in shown.stdout
    _dvc(project, "params", "diff", "--all")  # runs (``_dvc`` asserts success); nothing is committed yet to differ from


TRAIN_METRICS, TEST_METRICS = "runs/train/train_metrics.json", "reports/metrics.json"


def _experiment_revs(shown: list[dict]) -> list[dict]:
    """Every experiment rev that `dvc exp show --json` lists under the baseline commits."""
    return [rev for baseline in shown if baseline.get("experiments")
            for experiment in baseline["experiments"] for rev in experiment["revs"]]


@pytest.mark.slow
def test_dvc_exp_run_with_a_changed_param_and_its_diffs(repro):
    """A clone's workflow: commit dvc.lock and the metrics, `dvc exp run -S train.epochs=2`, compare."""
    project, _ = repro
    for path in ("dvc.lock", TRAIN_METRICS, TEST_METRICS):  # DVC reads these from commits, so git must keep them
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=project)
        assert ignored.returncode == 1, f"{path} is git-ignored; `dvc metrics diff`, `dvc exp show` need it in git"
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "baseline: tiny pipeline after dvc repro")
    committed = set(_git(project, "ls-files").stdout.splitlines())
    assert {"dvc.lock", "params.yaml", TRAIN_METRICS, TEST_METRICS} <= committed
    assert not any(name.startswith(("data/curated/", "runs/train/checkpoints/")) or name == "mlflow.db"
                   for name in committed)  # data and models stay in the DVC cache

    ran = _dvc(project, "exp", "run", "-S", "train.epochs=2")
    for stage in ("train", "calibrate", "register"):
        assert f"Running stage '{stage}'" in ran.stdout
    for stage in ("demo_data", "curate", "prepare_spoof"):
        assert f"Running stage '{stage}'" not in ran.stdout
    assert "Ran experiment(s)" in ran.stdout
    assert json.loads((project / TRAIN_METRICS).read_text())["epochs"] == 2  # the result is in the workspace
    assert not json.loads((project / "reports" / "registered.json").read_text())["reused"]  # new weights, new version

    shown = json.loads(_dvc(project, "exp", "show", "--json").stdout)
    baseline = next(entry for entry in shown if entry["rev"] != "workspace")
    assert baseline["data"]["params"]["params.yaml"]["data"]["train"]["epochs"] == 1
    assert baseline["data"]["metrics"][TRAIN_METRICS]["data"]["epochs"] == 1
    (experiment,) = [rev for rev in _experiment_revs(shown)
                     if rev["data"]["params"]["params.yaml"]["data"]["train"]["epochs"] == 2]
    metrics = experiment["data"]["metrics"]
    assert all("error" not in metrics[path] for path in (TRAIN_METRICS, TEST_METRICS)), metrics
    assert metrics[TRAIN_METRICS]["data"]["epochs"] == 2
    assert metrics[TRAIN_METRICS]["data"]["steps"] == 2 * baseline["data"]["metrics"][TRAIN_METRICS]["data"]["steps"]
    assert metrics[TEST_METRICS]["data"]["data"] == "synthetic" and "auc" in metrics[TEST_METRICS]["data"]["test"]

    params_diff = json.loads(_dvc(project, "params", "diff", "--json").stdout)
    assert params_diff == {"params.yaml": {"train.epochs": {"old": 1, "new": 2, "diff": 1}}}
    metrics_diff = json.loads(_dvc(project, "metrics", "diff", "--all", "--json").stdout)
    assert metrics_diff[TRAIN_METRICS]["epochs"]["old"] == 1 and metrics_diff[TRAIN_METRICS]["epochs"]["new"] == 2
    test_auc = metrics_diff[TEST_METRICS]["test.auc"]
    assert test_auc["old"] is not None and test_auc["new"] is not None  # both sides read, none missing
    assert all(value["old"] is not None for value in metrics_diff[TRAIN_METRICS].values())


def _stand_in_outputs(project: Path) -> None:
    """A small file at every stage output and data dep that is missing, so `dvc commit` can record the stages
    as they are without running them. A path with a suffix is a file, else a folder holding one."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    for spec in stages.values():
        for entry in [*spec.get("outs", []), *spec.get("metrics", []), *spec.get("deps", [])]:
            path = project / (entry if isinstance(entry, str) else next(iter(entry)))
            if path.exists():
                continue
            target = path if path.suffix else path / "stand_in.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("stand-in output of a stage that was not run\n")


def test_editing_a_module_two_imports_away_marks_the_stage_changed(tmp_path):
    """pipeline/train.py imports liveness.train.stage, which imports liveness.data.shards (the hops are checked
    in tests/unit/test_stage_deps.py). With every stage recorded as up to date by `dvc commit`, a one-line edit
    there makes `dvc status` name train and the other stages that import it, and not register, which does not."""
    project = _project_copy(tmp_path / "project")
    _stand_in_outputs(project)
    _dvc(project, "commit", "--force")
    assert json.loads(_dvc(project, "status", "--json").stdout) == {}

    edited = "src/liveness/data/shards.py"
    with (project / edited).open("a") as module:
        module.write("# an edit two imports away from pipeline/train.py\n")
    status = json.loads(_dvc(project, "status", "--json").stdout)
    changed = {stage: {path for change in changes if isinstance(change, dict)
                       for path in change.get("changed deps", {})} for stage, changes in status.items()}
    reaching = {stage for stage, (_, files) in stage_graphs(yaml.safe_load((project / "dvc.yaml").read_text()),
                                                             project).items() if edited in files}
    assert "train" in reaching and "register" not in reaching  # else pick another module for this test
    assert set(changed) == reaching, status  # exactly the stages whose imports reach the module, for that file
    assert all(paths == {edited} for paths in changed.values()), status
