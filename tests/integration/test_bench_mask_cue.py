"""bench/mask_cue_resolution.py runs and reports the mask-vs-live texture and colour AUCs per crop size (tiny settings)."""

from __future__ import annotations

import importlib.util

from tests.fixtures.paths import PROJECT_ROOT


def _bench():
    spec = importlib.util.spec_from_file_location("mask_cue", PROJECT_ROOT / "bench" / "mask_cue_resolution.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_mask_cue_bench_prints_one_auc_per_crop_size(capsys):
    bench = _bench()
    result = bench.main(["--identities", "6", "--source-size", "96", "--crop-sizes", "32", "64"])
    assert result["synthetic"] is True and result["identities"] == 6
    assert set(result["texture_auc_mask_vs_live"]) == {"source", "32", "64"}
    assert all(0.0 <= value <= 1.0 for value in result["texture_auc_mask_vs_live"].values())
    assert set(result["saturation_contrast_auc_mask_vs_live"]) == {"32", "64"}
    assert capsys.readouterr().out.strip().startswith("{")


def test_saturation_contrast_is_negative_for_paler_cheeks():
    import numpy as np

    bench = _bench()
    crop = np.zeros((64, 64, 3), np.uint8)
    crop[...] = (200, 120, 90)  # skin
    assert abs(bench.saturation_contrast(crop)) < 1e-6
    crop[30:40, 20:44] = (170, 140, 130)  # a paler print over the cheeks
    assert bench.saturation_contrast(crop) < -20
