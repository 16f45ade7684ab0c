"""Register, promote and predict against a throwaway SQLite MLflow store, with a tiny random generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

import liveness
from liveness.registry.promote import promote
from liveness.registry.register import register
from tests.fixtures.params import tiny_params
from tests.fixtures.bundles import astronaut, make_model_dir, png_bytes
from tests.fixtures.registry import write_metrics


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A project folder (cwd, so MLflow's artifacts land in it too) with a tiny model and an SQLite store.

    The store is named in the params, not the environment: conftest points MLFLOW_TRACKING_URI at a per-test
    database, and these tests share one store."""
    root = tmp_path_factory.mktemp("project")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    patch = pytest.MonkeyPatch()
    patch.chdir(root)
    make_model_dir(root / "runs/train")
    write_metrics(root / "reports/metrics.json")
    params = tiny_params(curate={"crop": {"size": 32}, "detection": {"device": "cpu"}},
                         register={"tracking_uri": uri, "model_dir": str(root / "runs/train"), "metrics": str(root / "reports/metrics.json")})
    first = register(params)
    again = register(params)
    first_promotion = promote(MlflowClient(uri), "liveness")
    yield {"root": root, "uri": uri, "params": params, "first": first, "again": again, "promotion": first_promotion}
    patch.undo()


def test_register_creates_version_one_with_challenger_alias(store):
    client = MlflowClient(store["uri"])
    assert store["first"].version == "1" and not store["first"].reused
    version = client.get_model_version_by_alias("liveness", "challenger")
    assert str(version.version) == "1" and version.tags["data"] == "synthetic"
    run = client.get_run(version.run_id)
    assert run.data.metrics["auc"] == 0.9 and "hter" not in run.data.metrics
    assert run.data.tags["content_hash"] == store["first"].content_hash
    card = Path(client.download_artifacts(version.run_id, "model_card.md", str(store["root"]))).read_text()
    assert "SYNTHETIC" in card
    registered = json.loads((store["root"] / "reports/registered.json").read_text())
    assert (registered["name"], registered["version"], registered["run_id"]) == ("liveness", "1", version.run_id)


def test_registering_the_same_content_reuses_the_version(store):
    assert store["again"].version == "1" and store["again"].reused
    assert len(MlflowClient(store["uri"]).search_model_versions("name='liveness'")) == 1


def test_first_challenger_becomes_champion(store):
    assert store["promotion"].promoted, store["promotion"].reason
    version = MlflowClient(store["uri"]).get_model_version_by_alias("liveness", "champion")
    assert str(version.version) == "1" and version.tags["promotion.decision"] == "promoted"


def test_logged_model_carries_the_package_source(store, tmp_path):
    """code_paths: the model folder holds code/liveness/ (no bytecode), and MLmodel puts code/ on sys.path."""
    import mlflow
    import yaml

    mlflow.set_tracking_uri(store["uri"])
    model = Path(mlflow.artifacts.download_artifacts("models:/liveness/1", dst_path=str(tmp_path)))
    code = model / "code" / "liveness"
    source = Path(liveness.__file__).parent
    for module in ("__init__.py", "config.py", "bundle/predictor.py", "registry/pyfunc_model.py",
                   "data/faces.py", "evaluate/scoring.py", "model/score.py"):
        assert (code / module).read_text() == (source / module).read_text(), module
    assert not list(code.rglob("__pycache__"))
    flavor = yaml.safe_load((model / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["code"] == "code"


def test_champion_loads_and_predicts_in_a_fresh_process_without_the_package(store):
    """A fresh interpreter where ``liveness`` is not importable (its source folder is taken off sys.path) loads
    the champion from the code the model carries."""
    code = ("import importlib.util, sys; sys.path = [p for p in sys.path if p != sys.argv[2]]; "
            "assert importlib.util.find_spec('liveness') is None, 'liveness still importable'; "
            "import mlflow, pandas as pd; m = mlflow.pyfunc.load_model('models:/liveness@champion'); "
            "out = m.predict(pd.DataFrame({'image': [open(sys.argv[1], 'rb').read()]})); "
            "print(sys.modules['liveness'].__file__); "
            "print(out.loc[0, 'label'], out.loc[0, 'face_found'], out.loc[0, 'trained_on'])")
    image = store["root"] / "astronaut.png"
    image.write_bytes(png_bytes(astronaut()))
    source_root = str(Path(liveness.__file__).resolve().parents[1])
    env = os.environ | {"MLFLOW_TRACKING_URI": store["uri"], "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", code, str(image), source_root], capture_output=True, text=True,
                            env=env, cwd=store["root"], timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    *_, loaded_from, verdict = result.stdout.splitlines()
    assert Path(loaded_from).parts[-3:] == ("code", "liveness", "__init__.py")
    assert not loaded_from.startswith(source_root)
    label, found, trained_on = verdict.split()
    assert label in {"live", "spoof"} and found == "True" and trained_on == "synthetic"


def test_predict_cli_reports_the_broken_file(store):
    folder = store["root"] / "inputs"
    (folder / "nested").mkdir(parents=True)
    (folder / "face.png").write_bytes(png_bytes(astronaut()))
    (folder / "nested/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    env = os.environ | {"MLFLOW_TRACKING_URI": store["uri"], "MLFLOW_DISABLE_TELEMETRY": "true"}
    result = subprocess.run([sys.executable, "-m", "liveness", "predict", str(folder), "--params", "absent.yaml"],
                            capture_output=True, text=True, env=env, cwd=store["root"], timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    rows = {Path(row["path"]).name: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows["face.png"]["face_found"] and rows["face.png"]["label"] in {"live", "spoof"}
    assert rows["broken.jpg"]["label"] == "rejected" and rows["broken.jpg"]["reason"] == "truncated"
    assert "broken.jpg" in result.stderr and "truncated" in result.stderr
    champion = {"name": "liveness", "version": "1", "uri": "models:/liveness@champion"}  # the alias, resolved
    assert all(row["model"] == champion and row["trained_on"] == "synthetic" for row in rows.values())
    warning = "warning: model liveness v1 was trained on SYNTHETIC data; its scores say nothing about real faces"
    assert result.stderr.count(warning) == 1


def test_predict_cli_by_version_with_the_onnx_backend_says_to_export(store):
    """models:/<name>/<version> resolves through the same source as serve; the registry holds no model.onnx."""
    image = store["root"] / "face-onnx.png"
    image.write_bytes(png_bytes(astronaut()))
    env = os.environ | {"MLFLOW_TRACKING_URI": store["uri"], "MLFLOW_DISABLE_TELEMETRY": "true"}
    command = [sys.executable, "-m", "liveness", "predict", str(image), "--params", "absent.yaml", "--model",
               "models:/liveness/1"]
    torch_run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=store["root"], timeout=120)
    assert torch_run.returncode == 0, torch_run.stderr[-2000:]
    (row,) = map(json.loads, torch_run.stdout.splitlines())
    assert row["model"] == {"name": "liveness", "version": "1", "uri": "models:/liveness/1"}
    assert row["trained_on"] == "synthetic" and "model liveness v1 was trained on SYNTHETIC" in torch_run.stderr
    onnx_run = subprocess.run([*command, "--backend", "onnx"], capture_output=True, text=True, env=env,
                              cwd=store["root"], timeout=120)
    assert onnx_run.returncode == 2 and "liveness export onnx --model models:/liveness/1" in onnx_run.stderr


def test_worse_challenger_is_refused_and_champion_kept(store):
    """Runs last: it registers a second version."""
    root, client = store["root"], MlflowClient(store["uri"])
    make_model_dir(root / "runs/train", seed=1)
    write_metrics(root / "reports/metrics.json", bpcer100=0.5)
    assert register(store["params"]).version == "2"
    decision = promote(client, "liveness")
    assert not decision.promoted and "bpcer100" in decision.reason
    assert str(client.get_model_version_by_alias("liveness", "champion").version) == "1"
    assert client.get_model_version("liveness", "2").tags["promotion.decision"] == "refused"
