import numpy as np
import pytest

from liveness.evaluate import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)
SCORES = np.concatenate([RNG.normal(0, 1, 40), RNG.normal(1.5, 1, 30)])
IS_ATTACK = np.array([False] * 40 + [True] * 30)
SPECIES = np.array(["live"] * 40 + ["print"] * 15 + ["replay"] * 15)


class TestCurvePoints:
    def test_roc_is_monotone_from_origin_to_corner(self):
        roc = plots.roc_points(SCORES, IS_ATTACK)
        assert list(roc.columns) == ["fpr", "tpr"]
        assert (np.diff(roc["fpr"]) >= 0).all() and (np.diff(roc["tpr"]) >= 0).all()
        assert roc.iloc[0].tolist() == [0.0, 0.0] and roc.iloc[-1].tolist() == [1.0, 1.0]

    def test_det_trades_apcer_for_bpcer(self):
        det = plots.det_points(SCORES, IS_ATTACK)
        roc = plots.roc_points(SCORES, IS_ATTACK)
        assert list(det.columns) == ["apcer", "bpcer"]
        assert (np.diff(det["bpcer"]) >= 0).all() and (np.diff(det["apcer"]) <= 0).all()
        np.testing.assert_allclose(det["apcer"], 1 - roc["tpr"])

    def test_one_class_is_refused_by_name(self):
        with pytest.raises(ValueError, match="no attack"):
            plots.roc_points(SCORES[:40], IS_ATTACK[:40])


class TestFigures:
    def test_figures_are_png(self):
        curves = {"all": plots.roc_points(SCORES, IS_ATTACK)}
        det = {"all": plots.det_points(SCORES, IS_ATTACK)}
        for png in (plots.roc_png(curves, "t"), plots.det_png(det, "t"),
                    plots.score_histogram_png(SCORES, SPECIES, 0.7, "t", "latent_bg")):
            assert png.startswith(PNG_SIGNATURE)

    def test_title_prefix_marks_synthetic_data(self):
        assert plots.title_prefix(True) == "SYNTHETIC data: " and plots.title_prefix(False) == ""


class TestDecompositionGrid:
    def test_shape_and_layout(self):
        images = [RNG.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8) for _ in range(3)]
        grid = plots.decomposition_grid(*images, RNG.uniform(0, 1, (3, 4, 4)))
        assert grid.shape == (3 * 16, 4 * 16, 3) and grid.dtype == np.uint8
        np.testing.assert_array_equal(grid[16:32, 16:32], images[1][1])  # row 1, column I_c

    def test_maps_share_one_colour_scale(self):
        blank = np.zeros((2, 8, 8, 3), dtype=np.uint8)
        maps = np.stack([np.full((2, 2), 0.5), np.full((2, 2), 1.0)])
        grid = plots.decomposition_grid(blank, blank, blank, maps, vmax=2.0)
        low, high = grid[0, 24], grid[8, 24]
        np.testing.assert_array_equal(low, plots.colorize(np.array([[[0.5]]]), 2.0)[0, 0, 0])
        np.testing.assert_array_equal(high, plots.colorize(np.array([[[1.0]]]), 2.0)[0, 0, 0])
        assert not np.array_equal(low, high)

    def test_png_with_labels(self):
        blank = np.zeros((2, 8, 8, 3), dtype=np.uint8)
        grid = plots.decomposition_grid(blank, blank, blank, np.ones((2, 2, 2)))
        assert plots.decomposition_png(grid, ["live", "print"], 1.0, "t").startswith(PNG_SIGNATURE)
