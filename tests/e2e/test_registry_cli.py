"""`liveness promote` and `liveness predict` (videos) end to end, through the CLI, on tiny local models.

promote runs against a fresh SQLite registry per test; predict scores a local pyfunc model folder, so it needs
no registry at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from liveness.cli import app
from liveness.registry.register import register
from tests.fixtures.params import tiny_params
from tests.fixtures.registry import write_metrics
from tests.fixtures.bundles import astronaut, make_model_dir, png_bytes

runner = CliRunner()


@pytest.fixture(autouse=True)
def _forget_tracking_uri():
    """The CLI sets MLflow's process-wide tracking URI; do not let it point later tests at this test's store."""
    yield
    import mlflow

    mlflow.set_tracking_uri(None)


class Registry:
    """A project folder with an SQLite store named in its params.yaml, and a way to register tiny models."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.params_path = root / "params.yaml"
        self.params_path.write_text(yaml.safe_dump({"register": {"tracking_uri": self.uri}}))
        self.client = MlflowClient(self.uri)

    def register(self, seed: int, **test_metrics: float) -> str:
        """Register a random tiny generator (``seed``) whose calibration reports ``test_metrics``."""
        make_model_dir(self.root / "runs/train", seed=seed)
        write_metrics(self.root / "reports/metrics.json", **test_metrics)
        params = tiny_params(curate={"crop": {"size": 32}, "detection": {"device": "cpu"}},
                             register={"tracking_uri": self.uri, "model_dir": str(self.root / "runs/train"),
                                       "metrics": str(self.root / "reports/metrics.json")})
        return register(params).version

    def promote(self, *arguments: str):
        return runner.invoke(app, ["promote", "--params", str(self.params_path), *arguments])

    def alias(self, name: str) -> str:
        return str(self.client.get_model_version_by_alias("liveness", name).version)

    def tags(self, version: str) -> dict[str, str]:
        return self.client.get_model_version("liveness", version).tags


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Registry:
    monkeypatch.chdir(tmp_path)  # MLflow's artifacts land beside the store, inside tmp_path
    return Registry(tmp_path)


def _table_row(output: str, metric: str) -> list[str]:
    """The cells of the promote table's row for ``metric`` (rich draws cells between │ bars)."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│┃|").split("│")]
        if cells and cells[0] == metric:
            return cells
    raise AssertionError(f"no table row for {metric!r} in:\n{output}")


class TestPromote:
    def test_nothing_registered_is_refused_and_says_to_register(self, registry):
        result = registry.promote()
        assert result.exit_code == 1, result.output
        assert "promotion refused" in result.stderr and "has no @challenger" in result.stderr
        assert "register" in result.stderr
        other = registry.promote("--name", "other-model")
        assert other.exit_code == 1 and "'other-model' has no @challenger" in other.stderr

    def test_first_challenger_becomes_champion_with_table_and_record(self, registry):
        assert registry.register(seed=0) == "1"
        result = registry.promote()
        assert result.exit_code == 0, result.output
        assert "promoted liveness v1 to @champion" in result.stderr
        assert "liveness: challenger v1 vs champion v-" in result.stderr
        assert _table_row(result.stderr, "bpcer100") == ["bpcer100", "challenger <= champion", "0.2", "-", "yes"]
        assert _table_row(result.stderr, "auc") == ["auc", "challenger >= champion", "0.9", "-", "yes"]
        assert registry.alias("champion") == "1"
        tags = registry.tags("1")
        assert tags["promotion.decision"] == "promoted" and tags["promotion.champion_before"] == "none"
        assert tags["promotion.gate"] == "bpcer100<=,auc>=" and "no @champion yet" in tags["promotion.reason"]
        assert "promotion promoted" in registry.client.get_model_version("liveness", "1").description

        again = registry.promote()  # nothing new to promote: refused, and nothing moves
        assert again.exit_code == 1 and "version 1 is already @champion" in again.stderr
        assert registry.alias("champion") == "1" and registry.tags("1")["promotion.decision"] == "promoted"

    def test_worse_challenger_is_refused_and_champion_untouched(self, registry):
        registry.register(seed=0)
        assert registry.promote().exit_code == 0
        assert registry.register(seed=1, bpcer100=0.5) == "2"
        result = registry.promote()
        assert result.exit_code == 1, result.output
        assert "promotion refused: bpcer100 0.5 is not <= champion's 0.2" in result.stderr
        assert "liveness: challenger v2 vs champion v1" in result.stderr
        assert _table_row(result.stderr, "bpcer100") == ["bpcer100", "challenger <= champion", "0.5", "0.2", "no"]
        assert _table_row(result.stderr, "auc") == ["auc", "challenger >= champion", "0.9", "0.9", "yes"]
        assert registry.alias("champion") == "1" and registry.alias("challenger") == "2"
        refused = registry.tags("2")
        assert refused["promotion.decision"] == "refused" and refused["promotion.champion_before"] == "1"
        assert "bpcer100" in refused["promotion.reason"]
        assert "promotion refused" in registry.client.get_model_version("liveness", "2").description
        assert registry.tags("1")["promotion.decision"] == "promoted"

    def test_better_challenger_replaces_champion_under_a_custom_gate(self, registry):
        registry.register(seed=0)
        assert registry.promote().exit_code == 0
        registry.register(seed=1, bpcer100=0.1, auc=0.8)  # better BPCER100, worse AUC
        assert registry.promote().exit_code == 1  # the default gate also asks auc>=
        result = registry.promote("--gate", "bpcer100<=")
        assert result.exit_code == 0, result.output
        assert "promoted liveness v2 to @champion (gate passed)" in result.stderr
        assert registry.alias("champion") == "2"
        tags = registry.tags("2")
        assert tags["promotion.decision"] == "promoted" and tags["promotion.champion_before"] == "1"
        assert tags["promotion.gate"] == "bpcer100<="

    def test_challenger_without_a_gate_metric_is_refused(self, registry):
        registry.register(seed=0, bpcer100=float("nan"))  # NaN is not logged: the run lacks bpcer100
        result = registry.promote()
        assert result.exit_code == 1, result.output
        assert "bpcer100 missing or not finite" in result.stderr
        assert _table_row(result.stderr, "bpcer100")[-1] == "no"
        assert registry.tags("1")["promotion.decision"] == "refused"
        assert not registry.client.get_registered_model("liveness").aliases.get("champion")

    def test_bad_gate_is_a_usage_error_and_changes_nothing(self, registry):
        registry.register(seed=0)
        result = registry.promote("--gate", "auc>")
        assert result.exit_code == 2
        assert "gate rule 'auc>' is not METRIC<= or METRIC>=" in result.stderr
        assert "promotion.decision" not in registry.tags("1")
        assert not registry.client.get_registered_model("liveness").aliases.get("champion")


# --- predict on videos -------------------------------------------------------------------------------------------

SYNTHETIC_WARNING = "was trained on SYNTHETIC data; its scores say nothing about real faces"
VIDEO_FRAMES = 9  # written; predict samples --frames of them evenly, first and last included


def _write_video(path: Path, fourcc: str, frames: int = VIDEO_FRAMES) -> Path:
    """A short clip of the astronaut photo drifting sideways (a face in every frame)."""
    image = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 5.0, (image.shape[1], image.shape[0]))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    for index in range(frames):
        writer.write(np.roll(image, 4 * index, axis=1))
    writer.release()
    return path


@pytest.fixture(scope="module")
def local_model(tmp_path_factory) -> Path:
    """A local pyfunc model folder around a tiny random generator bundle: no registry needed."""
    import mlflow

    from liveness.registry import pyfunc_model

    root = tmp_path_factory.mktemp("local-model")
    bundle = make_model_dir(root / "bundle")
    mlflow.pyfunc.save_model(str(root / "model"), python_model=pyfunc_model.__file__,
                             artifacts={pyfunc_model.BUNDLE: str(bundle)})
    return root / "model"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video at all" * 10)
    return {"mp4": _write_video(folder / "clip.mp4", "mp4v"), "avi": _write_video(folder / "clip.avi", "MJPG", 2),
            "broken": broken}


def _rows(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_predict_video_gives_one_row_per_sampled_frame(local_model, videos):
    result = runner.invoke(app, ["predict", str(videos["mp4"]), str(videos["avi"]), "--model", str(local_model),
                                 "--frames", "3", "--params", "absent.yaml"])
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert [(Path(row["path"]).name, row["frame"]) for row in rows] == [
        ("clip.mp4", 0), ("clip.mp4", 4), ("clip.mp4", 8),  # 3 of 9 frames, evenly spaced
        ("clip.avi", 0), ("clip.avi", 1)]  # a 2-frame clip gives what it has
    for row in rows:
        assert row["path"] in {str(videos["mp4"]), str(videos["avi"])}
        assert row["face_found"] and row["label"] in {"live", "spoof"} and row["reason"] == ""
        assert isinstance(row["score"], float) and len(row["box"]) == 4 and row["threshold"] == 0.5
        assert row["trained_on"] == "synthetic"
        assert row["model"] == {"name": "model", "version": "local", "uri": str(local_model)}
    assert result.stderr.count(SYNTHETIC_WARNING) == 1  # once per invocation, not once per frame
    assert "warning: model model (local) was trained on SYNTHETIC data" in result.stderr


def test_broken_video_in_a_fresh_process_is_a_failure_row_and_exit_1(local_model, videos):
    """A separate interpreter (mlflow.pyfunc.load_model from scratch): the good video's frames are scored, the
    broken one is a rejected row with its reason, stderr names it, and the exit status is 1."""
    env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true"}
    result = subprocess.run([sys.executable, "-m", "liveness", "predict", str(videos["broken"]), str(videos["mp4"]),
                             "--model", str(local_model), "--frames", "2", "--params", "absent.yaml"],
                            capture_output=True, text=True, env=env, cwd=local_model.parent, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    rows = _rows(result.stdout)
    assert len(rows) == 3
    broken, *frames = rows
    assert broken == {"path": str(videos["broken"]), "frame": None, "face_found": False, "box": None, "score": None,
                      "threshold": 0.5, "label": "rejected", "reason": "video_unreadable", "converted": "",
                      "detail": f"video {videos['broken']} cannot be opened: not a video, or damaged",
                      "trained_on": "synthetic",
                      "model": {"name": "model", "version": "local", "uri": str(local_model)}}
    assert [row["frame"] for row in frames] == [0, VIDEO_FRAMES - 1]
    assert all(row["face_found"] and row["label"] in {"live", "spoof"} for row in frames)
    assert "broken.mp4" in result.stderr and "video_unreadable" in result.stderr
    assert "1 of 3 inputs failed" in result.stderr
    assert result.stderr.count(SYNTHETIC_WARNING) == 1


# --- predict: honest outputs -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    (folder / "face.png").write_bytes(png_bytes(astronaut()))
    (folder / "blank.png").write_bytes(png_bytes(np.full((96, 96, 3), 128, np.uint8)))
    return {"face": folder / "face.png", "blank": folder / "blank.png"}


def _pyfunc_folder(root: Path, data: str) -> Path:
    import mlflow

    from liveness.registry import pyfunc_model

    bundle = make_model_dir(root / "bundle", data=data)
    mlflow.pyfunc.save_model(str(root / "model"), python_model=pyfunc_model.__file__,
                             artifacts={pyfunc_model.BUNDLE: str(bundle)})
    return root / "model"


def _predict(model: Path, *inputs: Path, backend: str = "torch"):
    return runner.invoke(app, ["predict", *map(str, inputs), "--model", str(model), "--backend", backend,
                               "--params", "absent.yaml"])


def _check_rows(result, model: Path, data: str, name: str) -> list[dict]:
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert rows and all(row["trained_on"] == data for row in rows)
    assert all(row["model"] == {"name": name, "version": "local", "uri": str(model)} for row in rows)
    return rows


def test_predict_with_a_real_data_model_says_so_and_does_not_warn(tmp_path, images):
    model = _pyfunc_folder(tmp_path, "real")
    result = _predict(model, images["face"], images["blank"])
    rows = _check_rows(result, model, "real", "model")
    assert [row["label"] for row in rows][1:] == ["no_face"] and rows[0]["face_found"]
    assert "SYNTHETIC" not in result.stderr and "warning" not in result.stderr


def test_predict_warns_only_when_a_synthetic_model_scored_an_image(local_model, images):
    unscored = _predict(local_model, images["blank"])  # no face: nothing was scored, so no warning
    assert _check_rows(unscored, local_model, "synthetic", "model")[0]["label"] == "no_face"
    assert SYNTHETIC_WARNING not in unscored.stderr
    scored = _predict(local_model, images["blank"], images["face"], images["face"])
    assert [row["label"] for row in _check_rows(scored, local_model, "synthetic", "model")][0] == "no_face"
    assert scored.stderr.count(SYNTHETIC_WARNING) == 1


@pytest.mark.parametrize("data", ["synthetic", "real"])
def test_predict_scores_a_bundle_folder_directly_with_honest_rows(tmp_path, images, data):
    bundle = make_model_dir(tmp_path / "tiny", data=data)
    result = _predict(bundle, images["face"])
    (row,) = _check_rows(result, bundle, data, "tiny")
    assert row["face_found"] and row["label"] in {"live", "spoof"} and row["threshold"] == 0.5
    assert (SYNTHETIC_WARNING in result.stderr) is (data == "synthetic")


@pytest.mark.slow
@pytest.mark.parametrize("data", ["synthetic", "real"])
def test_onnx_backend_rows_carry_trained_on_and_the_model(tmp_path, images, data, one_torch_thread):
    from liveness.export.onnx import export_bundle

    bundle = make_model_dir(tmp_path / "tiny", data=data)
    export_bundle(bundle)  # model.onnx beside config.json
    result = _predict(bundle, images["face"], images["blank"], backend="onnx")
    face, blank = _check_rows(result, bundle, data, "tiny")
    assert face["face_found"] and isinstance(face["score"], float) and blank["label"] == "no_face"
    assert result.stderr.count(SYNTHETIC_WARNING) == (1 if data == "synthetic" else 0)
    if data == "synthetic":
        assert "warning: model tiny (local) was trained on SYNTHETIC data" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_predict_on_a_folder_of_awkward_files_gives_every_file_its_row(tmp_path, backend, one_torch_thread):
    """Issue 11: the folder that once stopped `liveness predict` with a traceback and no rows (a 1x1 image)."""
    from liveness.data.decode import CONVERSIONS
    from liveness.export.onnx import export_bundle
    from liveness.bundle import PREDICTION_REASONS
    from tests.fixtures.bad_images import CONVERTED, CORPUS, write_bad_image_corpus

    bundle = make_model_dir(tmp_path / "tiny")
    if backend == "onnx":
        export_bundle(bundle)
    folder = tmp_path / "awkward"
    write_bad_image_corpus(folder)
    (folder / "face.png").write_bytes(png_bytes(astronaut()))
    (folder / "notes.txt").write_text("not an image, skipped by name and content")
    (folder / "photo_without_suffix").write_bytes(png_bytes(astronaut()[:64, :64]))
    os.mkfifo(folder / "named_pipe.jpg")  # nobody writes to them: reading once waited forever
    os.mkfifo(folder / "named_pipe.mp4")
    result = _predict(bundle, folder, backend=backend)
    assert result.exit_code == 1, result.output  # some inputs were rejected, as documented
    rows = {Path(row["path"]).name: row for row in _rows(result.stdout)}
    expected = ({name for name in CORPUS if name != "directory.jpg"}
                | {"face.png", "photo_without_suffix", "named_pipe.jpg", "named_pipe.mp4"})
    assert set(rows) - {name for name in rows if "directory.jpg" in name} == expected
    assert "skipped 1 file" in result.stderr
    assert rows["face.png"]["face_found"] and rows["face.png"]["label"] in {"live", "spoof"}
    assert (rows["named_pipe.jpg"]["reason"], rows["named_pipe.mp4"]["reason"]) == ("empty_file", "video_unreadable")
    for name, row in rows.items():
        assert row["label"] in {"live", "spoof", "no_face", "rejected"}
        assert row["threshold"] == 0.5, row  # also on files that failed before the model saw them
        assert row["label"] != "rejected" or row["reason"] in PREDICTION_REASONS, row
        # a rejected row says what happened in words, without repeating the reason code or a batch position
        assert bool(row["detail"]) == (row["label"] == "rejected"), row
        assert "rejected (" not in row["detail"] and "input " not in row["detail"], row
        if row["label"] == "rejected":
            assert f"{name}: {row['reason']} (" in " ".join(result.stderr.split()), name  # the failed: line too
        reason = CORPUS.get(name)
        if reason is not None:
            assert (row["label"], row["reason"]) == ("rejected", reason), name
        elif name in CONVERTED:
            assert row["converted"] == CONVERTED[name] and row["converted"] in {"", *CONVERSIONS}, name
