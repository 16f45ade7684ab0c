"""bench/mask_cue_resolution.py runs and reports the mask-vs-live texture AUC per crop size (tiny settings)."""

from __future__ import annotations

import importlib.util

from tests.fixtures.paths import PROJECT_ROOT


def test_mask_cue_bench_prints_one_auc_per_crop_size(capsys):
    spec = importlib.util.spec_from_file_location("mask_cue", PROJECT_ROOT / "bench" / "mask_cue_resolution.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--identities", "6", "--source-size", "96", "--crop-sizes", "32", "64"])
    assert result["synthetic"] is True and result["identities"] == 6
    assert set(result["texture_auc_mask_vs_live"]) == {"source", "32", "64"}
    assert all(0.0 <= value <= 1.0 for value in result["texture_auc_mask_vs_live"].values())
    assert capsys.readouterr().out.strip().startswith("{")
