"""bench/train_throughput.py runs end to end on CPU and prints one JSON object on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
