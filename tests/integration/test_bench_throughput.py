"""The bench scripts run end to end on CPU and print one JSON object on stdout: train_throughput, and the
old-against-new detection comparisons of curate_throughput and serve_load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from liveness.config import DetectionParams

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "train_throughput.py"

EXPECTED_KEYS = {
    "device", "size", "batch", "steps", "profile", "precision", "compile", "identity", "identity_weights",
    "gflop_per_image_train", "gflop_per_image_inference", "images_per_second", "tflops", "peak_memory_gib",
    "peak_memory_kind", "torch", "note",
}


def test_cpu_run_prints_one_json_object() -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--profile", "tiny", "--size", "32", "--batch", "2",
         "--steps", "1", "--warmup", "0", "--identity", "onet"],
        capture_output=True, text=True, timeout=120, cwd=SCRIPT.parents[1],
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)  # stdout holds the JSON object and nothing else

    assert EXPECTED_KEYS <= result.keys()
    assert result["device"].startswith("cpu")
    assert (result["size"], result["batch"], result["steps"]) == (32, 2, 1)
    assert (result["profile"], result["precision"], result["identity"]) == ("tiny", "fp32", "onet")
    assert result["compile"] is False
    assert result["peak_memory_kind"] == "cpu_max_rss" and result["peak_memory_gib"] > 0
    assert result["images_per_second"] > 0 and result["tflops"] > 0
    assert result["gflop_per_image_train"] > result["gflop_per_image_inference"] > 0


def test_default_identity_network_is_the_default_runs_real_one() -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--profile", "tiny", "--size", "32", "--batch", "2",
         "--steps", "1", "--warmup", "0"],
        capture_output=True, text=True, timeout=180, cwd=SCRIPT.parents[1],
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["identity"] == "dlib_resnet"
    assert result["identity_weights"].endswith("dlib_face_recognition_resnet_model_v1.dat")
    # f runs twice forward and once backward per image: dlib's ResNet alone is ~0.54 GFLOP forward.
    assert result["gflop_per_image_train"] > 1.0


CURATE_SCRIPT = SCRIPT.parent / "curate_throughput.py"
SERVE_SCRIPT = SCRIPT.parent / "serve_load.py"
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1"}


@pytest.mark.slow
def test_curate_throughput_compares_old_and_new_settings():
    completed = subprocess.run(
        [sys.executable, str(CURATE_SCRIPT), "--images", "3", "--sizes", "320x240", "--workers", "1", "--rounds", "1",
         "--size-error-photos", "6"],
        capture_output=True, text=True, timeout=300, cwd=SCRIPT.parents[1], env=os.environ | QUIET,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    figures = result["results"]["320x240"]
    assert set(result["settings"]) == {"old", "new"}
    for run in (figures["one_core"], figures["all_cores (1 processes)"]):
        assert run["img_s"]["old"] > 0 and run["img_s"]["new"] > 0
        assert run["ratio"] == pytest.approx(run["img_s"]["new"] / run["img_s"]["old"], rel=0.01)
        assert 0 <= run["outcomes_differ"] <= run["reasons_differ"] <= 3
    assert result["target_met"] is False  # the target is measured at 640x480
    assert set(figures["face_side_error"]) == {"old", "new"}
    repeatability = figures["outcome_repeatability"]
    assert set(repeatability["small_face_flips"]) == {
        "old_vs_new", "old_vs_old_shifted_1px", "old_vs_old_jpeg_saved", "new_vs_new_shifted_1px",
        "new_vs_new_jpeg_saved"}
    assert all(0 <= flips <= repeatability["faces"] for flips in repeatability["small_face_flips"].values())


def _curate_bench():
    sys.path.insert(0, str(CURATE_SCRIPT.parent))
    try:
        import curate_throughput
    finally:
        sys.path.remove(str(CURATE_SCRIPT.parent))
    return curate_throughput


class _ScriptedDetector:
    """Finds one square face whose side follows ``sides``, one per call, in turn."""

    def __init__(self, sides: list[float]) -> None:
        self.sides, self.calls = sides, 0

    def detect(self, image):
        from liveness.data.faces import Face

        side = self.sides[self.calls % len(self.sides)]
        self.calls += 1
        return [Face((0.0, 0.0, side, side), 0.99, None)]


def test_outcome_repeatability_counts_the_small_face_decisions_that_differ():
    bench = _curate_bench()
    # per photo the variants come in order photo, shifted_1px, jpeg_saved; old's face crosses 48 px when saved
    detectors = {"old": _ScriptedDetector([47.0, 47.5, 49.0]), "new": _ScriptedDetector([49.0, 49.0, 49.5])}
    result = bench.outcome_repeatability(640, 480, 60, detectors, min_face_px=48.0)
    faces = result["faces"]
    assert faces >= 10 and detectors["old"].calls == detectors["new"].calls == 3 * faces
    assert result["small_face_flips"] == {"old_vs_new": faces, "old_vs_old_shifted_1px": 0,
                                          "old_vs_old_jpeg_saved": faces, "new_vs_new_shifted_1px": 0,
                                          "new_vs_new_jpeg_saved": 0}
    assert result["side_change_mean_abs"]["old_vs_new"] == pytest.approx(49 / 47 - 1, abs=1e-4)
    assert result["side_change_mean_abs"]["new_vs_new_jpeg_saved"] == pytest.approx(49.5 / 49 - 1, abs=1e-4)


def test_the_variants_are_the_photo_moved_by_a_pixel_and_saved_as_jpeg():
    bench = _curate_bench()
    image = bench.photo(64, 48, 0)
    found = bench.variants(image)
    assert found["photo"] is image
    assert (found["shifted_1px"][:, 1:] == image[:, :-1]).all() and (found["shifted_1px"][:, 0] == 110).all()
    difference = np.abs(found["jpeg_saved"].astype(int) - image.astype(int))
    assert found["jpeg_saved"].shape == image.shape and 0 < difference.mean() < 4  # lossy, colours kept in order


@pytest.mark.slow
def test_face_sizes_near_the_small_face_limit_are_as_accurate_as_before(one_torch_thread):
    """The face size the small_face check reads, against the true size, for faces of 35-70 px in 640x480 photos:
    the new settings may flip a borderline image, but must not size faces worse than the old ones."""
    curate_throughput = _curate_bench()
    errors = curate_throughput.face_side_error(640, 480, 60, curate_throughput.settings_pair())
    assert errors["old"]["faces"] == errors["new"]["faces"] >= 15
    assert errors["new"]["mean_abs"] < 0.05 and errors["new"]["p90_abs"] < 0.08
    assert errors["new"]["mean_abs"] <= errors["old"]["mean_abs"] + 0.01


@pytest.mark.slow
def test_serve_load_compares_two_servers_and_splits_the_request_time():
    completed = subprocess.run(
        [sys.executable, str(SERVE_SCRIPT), "--clients", "2", "--seconds", "2", "--rounds", "2"],
        capture_output=True, text=True, timeout=600, cwd=SCRIPT.parents[1], env=os.environ | QUIET,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)  # one JSON line and nothing else on stdout
    former, old, new = (result["configs"][name] for name in ("former", "old", "new"))
    assert (old["detection"]["max_side"], new["detection"]["max_side"]) == (640, DetectionParams().max_side)
    assert former["detection"] == old["detection"] and "before issue 11" in former["detector"]
    assert result["errors"] == 0 and min(config["requests"] for config in (former, old, new)) > 0
    assert result["ratio_requests_per_s"] == pytest.approx(new["requests_per_s"] / old["requests_per_s"], rel=0.01)
    assert result["ratio_to_former"] == pytest.approx(new["requests_per_s"] / former["requests_per_s"], rel=0.01)
    for config in (former, old, new):
        assert set(config["phase_share"]) == {"queue", "decode", "detect", "score", "http"}
        assert sum(config["phase_share"].values()) == pytest.approx(1.0, abs=0.01)
        assert config["phase_share"]["detect"] > 0 and config["phase_share"]["score"] > 0
        # where the CPU goes: the server's and the clients' time per request, and the ceiling they set
        assert config["server_cpu_ms_per_request"] > 0 and config["client_cpu_ms_per_request"] > 0
        assert config["cpu_bound_requests_per_s"] == pytest.approx(
            (os.cpu_count() or 1) * 1000 / (config["server_cpu_ms_per_request"] + config["client_cpu_ms_per_request"]),
            rel=0.02)
    assert result["target_met"] is False


DETECT_COST_SCRIPT = SCRIPT.parent / "detect_cost.py"


@pytest.mark.slow
def test_detect_cost_times_the_variants_and_splits_the_default():
    completed = subprocess.run(
        [sys.executable, str(DETECT_COST_SCRIPT), "--repeats", "3", "--max-side", "200", "--min-face-size", "30",
         "--onnx"],
        capture_output=True, text=True, timeout=300, cwd=SCRIPT.parents[1], env=os.environ | QUIET,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)  # one JSON line and nothing else on stdout
    assert set(result["ms_per_detection"]) == {"default", "full_search", "max_side_200", "min_face_size_30",
                                               "onnxruntime_nets"}
    assert all(ms > 0 for ms in result["ms_per_detection"].values())
    assert result["ratio_to_default"]["default"] == 1.0
    assert result["default_settings"] == {"min_face_size": DetectionParams().min_face_size,
                                          "max_side": DetectionParams().max_side, "search": "coarse_first"}
    # the astronaut's one face; onnxruntime runs the same networks, so it finds the same box
    assert result["faces"]["default"] == 1 and result["same_faces"]["onnxruntime_nets"] is True
    assert result["same_faces"]["full_search"] is True  # the astronaut's face dominates: coarse-first stops early
    assert set(result["cost_share"]) <= {"convolution", "pooling", "prelu", "linear", "opencv_resize", "nms", "other"}
    assert sum(result["cost_share"].values()) == pytest.approx(1.0, abs=0.01)
    assert result["cost_share"]["convolution"] > 0 and result["cost_share"]["opencv_resize"] > 0
