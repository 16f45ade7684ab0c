"""The live-set skew report: crop statistics, the shortcut AUC and its markdown."""

import math

import numpy as np
import pandas as pd
import pytest

from liveness.evaluate.skew import (
    CROP_STATISTICS,
    SHORTCUT_LIMIT,
    crop_statistics,
    manifest_statistics,
    shortcut_auc,
    skew_markdown,
    summarise,
)


def _crops(count, seed, contrast=40.0):
    rng = np.random.default_rng(seed)
    base = rng.normal(128, contrast, size=(count, 32, 32, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _frame(crops, face_scale=0.4, padded=0.05):
    stats = crop_statistics(crops)
    stats["face_scale"], stats["padded_share"], stats["format"] = face_scale, padded, "jpg"
    return stats


class TestCropStatistics:
    def test_columns_and_known_values(self):
        flat = np.full((1, 16, 16, 3), 100, np.uint8)
        row = crop_statistics(flat).iloc[0]
        assert list(crop_statistics(flat).columns) == list(CROP_STATISTICS)
        assert row["luminance"] == pytest.approx(100, abs=0.5) and row["contrast"] == 0 and row["sharpness"] == 0

    def test_manifest_statistics_tolerate_old_manifests(self):
        rows = pd.DataFrame({"path": ["a/b.JPG", "c.png#3"]})
        stats = manifest_statistics(rows)
        assert stats["format"].tolist() == ["jpg", "png"] and stats["face_scale"].isna().all()


class TestShortcutAuc:
    def test_same_distribution_is_near_chance(self):
        first, second = _frame(_crops(60, 0)), _frame(_crops(60, 1))
        groups = np.arange(60) // 2
        assert abs(shortcut_auc(first, second, groups, groups) - 0.5) < 0.2

    def test_a_different_capture_is_caught(self):
        first, second = _frame(_crops(60, 0, contrast=40)), _frame(_crops(60, 1, contrast=10), padded=0.2)
        groups = np.arange(60) // 2
        assert shortcut_auc(first, second, groups, groups) > 0.95

    def test_too_few_subjects_give_nan(self):
        first, second = _frame(_crops(4, 0)), _frame(_crops(4, 1))
        assert math.isnan(shortcut_auc(first, second, np.zeros(4), np.zeros(4)))


def test_markdown_states_the_verdict():
    summary = summarise(_frame(_crops(8, 0)))
    assert summary["rows"] == 8 and summary["formats"] == {"jpg": 8}
    text = skew_markdown({"live train": summary}, 0.71, synthetic=True)
    assert "SYNTHETIC" in text and "ABOVE" in text and f"{SHORTCUT_LIMIT:.2f}" in text
    assert "within" in skew_markdown({"live train": summary}, 0.55, synthetic=False)
