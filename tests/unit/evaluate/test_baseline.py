import json

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture

from liveness.evaluate.baseline import (
    CHUNK,
    COMPONENT_CANDIDATES,
    IQM_FEATURE_NAMES,
    REG_COVAR,
    OneClassGMM,
    fit_baseline,
    iqm_features,
    score_baseline,
)

SIZE = 32
F = len(IQM_FEATURE_NAMES)


def live_like(n, rng, size=SIZE):
    """Smooth random colour blobs with mild sensor noise: a stand-in for live face crops."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.empty((n, size, size, 3))
    for i in range(n):
        image = np.zeros((size, size, 3)) + rng.uniform(40, 120, 3)
        for _ in range(4):
            cy, cx = rng.uniform(0, size, 2)
            sigma = rng.uniform(size / 8, size / 3)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma * sigma))
            image += blob[:, :, None] * rng.uniform(-60, 100, 3)
        out[i] = image + rng.normal(0, 2.0, image.shape)
    return out


def to_uint8(images):
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def halftone(images):
    yy, xx = np.mgrid[0 : images.shape[1], 0 : images.shape[2]]
    dots = 0.75 + 0.25 * np.cos(np.pi * yy / 1.5) * np.cos(np.pi * xx / 1.5)
    return images * dots[None, :, :, None]


def noisy(images, rng):
    return images + rng.normal(0, 12, images.shape)


def blurred(images):
    return np.stack([cv2.GaussianBlur(image, (0, 0), 1.2) for image in images])


@pytest.fixture(scope="module")
def crops():
    rng = np.random.default_rng(0)
    base = live_like(100, rng)
    return {
        "train": to_uint8(live_like(200, rng)),
        "held_out": to_uint8(live_like(100, rng)),
        "halftone": to_uint8(halftone(base)),
        "noise": to_uint8(noisy(base, rng)),
        "blur": to_uint8(blurred(base)),
    }


@pytest.fixture(scope="module")
def train_features(crops):
    return iqm_features(crops["train"])


@pytest.fixture(scope="module")
def model(crops):
    """The baseline as a pipeline fits it: live crops only, size by BIC."""
    return fit_baseline(crops["train"], seed=0)


def edge_crops():
    rng = np.random.default_rng(3)
    checker = (np.indices((16, 16)).sum(axis=0) % 2 * 255).astype(np.uint8)
    return {
        "black": np.zeros((1, 16, 16, 3), np.uint8),
        "white": np.full((1, 16, 16, 3), 255, np.uint8),
        "grey": np.full((1, 16, 16, 3), 128, np.uint8),
        "pure_red": np.broadcast_to(np.array([255, 0, 0], np.uint8), (1, 16, 16, 3)).copy(),
        "checkerboard": np.repeat(checker[None, :, :, None], 3, axis=3),
        "single_bright_pixel": np.pad(np.full((1, 1, 1, 3), 255, np.uint8), ((0, 0), (7, 8), (7, 8), (0, 0))),
        "random_8x8": rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8),
        "random_2x2": rng.integers(0, 256, (1, 2, 2, 3), dtype=np.uint8),
        "non_square_5x64": rng.integers(0, 256, (1, 5, 64, 3), dtype=np.uint8),
    }


class TestFeatureNames:
    def test_names_are_unique_and_match_columns(self):
        assert len(set(IQM_FEATURE_NAMES)) == F
        assert iqm_features(np.zeros((2, 8, 8, 3), np.uint8)).shape == (2, F)

    def test_galbally_measures_come_first(self):
        assert IQM_FEATURE_NAMES[:18] == (
            "psnr", "mse", "ad", "sc", "nk", "md", "lmse", "nae", "snrv", "ramd",
            "mas", "mams", "sme", "gme", "gpe", "ssim", "vif", "hlfi",
        )  # fmt: skip


class TestFeatureValues:
    @pytest.mark.parametrize("name", list(edge_crops()))
    def test_edge_images_give_finite_float64_rows(self, name):
        features = iqm_features(edge_crops()[name])
        assert features.dtype == np.float64
        assert features.shape == (1, F)
        assert np.all(np.isfinite(features)), dict(zip(IQM_FEATURE_NAMES, features[0]))

    def test_empty_batch(self):
        assert iqm_features(np.zeros((0, 16, 16, 3), np.uint8)).shape == (0, F)

    def test_constant_crop_reads_as_undistorted(self):
        row = dict(zip(IQM_FEATURE_NAMES, iqm_features(np.full((1, 16, 16, 3), 90, np.uint8))[0]))
        assert row["mse"] == pytest.approx(0.0, abs=1e-12)
        assert row["ssim"] == pytest.approx(1.0)
        assert row["vif"] == pytest.approx(1.0)
        assert row["colour_top1"] == 1.0 and row["colour_count99"] == 1.0

    def test_sharp_crop_differs_more_from_its_smoothed_copy_than_a_blurred_one(self, crops):
        sharp = iqm_features(crops["noise"][:20])
        smooth = iqm_features(crops["blur"][:20])
        mse, ssim = IQM_FEATURE_NAMES.index("mse"), IQM_FEATURE_NAMES.index("ssim")
        assert np.all(sharp[:, mse] > smooth[:, mse])
        assert np.all(sharp[:, ssim] < smooth[:, ssim])

    def test_colour_shares_are_ordered_fractions(self, train_features):
        top = train_features[:, [IQM_FEATURE_NAMES.index(f"colour_top{k}") for k in (1, 10, 100)]]
        assert np.all((top > 0) & (top <= 1))
        assert np.all(np.diff(top, axis=1) >= 0)


class TestPerSample:
    def test_a_crop_has_the_same_features_alone_and_in_a_batch(self, crops):
        batch = crops["train"][:40]
        together = iqm_features(batch)
        alone = np.concatenate([iqm_features(batch[i : i + 1]) for i in range(len(batch))])
        np.testing.assert_array_equal(alone, together)

    def test_chunk_boundaries_and_order_do_not_matter(self):
        rng = np.random.default_rng(5)
        batch = rng.integers(0, 256, (CHUNK + 30, 8, 8, 3), dtype=np.uint8)
        order = rng.permutation(len(batch))
        np.testing.assert_array_equal(iqm_features(batch)[order], iqm_features(batch[order]))

    def test_a_crop_has_the_same_score_alone_and_in_a_batch(self, crops, train_features):
        model = OneClassGMM().fit(train_features, components=2, feature_names=IQM_FEATURE_NAMES)
        batch = np.concatenate([crops["held_out"][:10], crops["halftone"][:10]])
        together = score_baseline(model, batch)
        alone = np.concatenate([score_baseline(model, batch[i : i + 1]) for i in range(len(batch))])
        np.testing.assert_array_equal(alone, together)


class TestDeterminism:
    def test_features_repeat_exactly(self, crops, train_features):
        np.testing.assert_array_equal(iqm_features(crops["train"].copy()), train_features)

    @pytest.mark.parametrize("components", [None, 2])
    def test_same_seed_gives_the_same_model(self, train_features, components):
        first = OneClassGMM().fit(train_features, components=components, seed=7).to_json()
        second = OneClassGMM().fit(train_features, components=components, seed=7).to_json()
        assert first == second


class TestOneClassGMM:
    def test_score_is_sklearns_negative_log_likelihood_on_live_standardised_features(self, train_features):
        model = OneClassGMM().fit(train_features, components=2, seed=0)
        std = train_features.std(axis=0)
        z = (train_features - train_features.mean(axis=0)) / np.where(std > 0, std, 1.0)
        reference = GaussianMixture(2, reg_covar=REG_COVAR, max_iter=500, random_state=0).fit(z)
        np.testing.assert_allclose(model.score(train_features), -reference.score_samples(z), rtol=1e-9, atol=1e-9)

    @pytest.mark.parametrize("covariance", ["full", "diag"])
    def test_scores_do_not_depend_on_feature_units(self, crops, train_features, covariance):
        # only true when features are standardised on the live data before the (regularised) mixture
        rng = np.random.default_rng(1)
        scale = 10.0 ** rng.uniform(-4, 4, F)
        shift = scale * rng.normal(0, 100, F)
        plain = OneClassGMM().fit(train_features, components=1, covariance=covariance)
        rescaled = OneClassGMM().fit(train_features * scale + shift, components=1, covariance=covariance)
        probe = iqm_features(np.concatenate([crops["held_out"][:10], crops["halftone"][:10]]))
        np.testing.assert_allclose(rescaled.score(probe * scale + shift), plain.score(probe), rtol=1e-6)

    def test_records_samples_and_standardisation(self, train_features):
        model = OneClassGMM().fit(train_features, components=1)
        assert model.samples == len(train_features)
        np.testing.assert_allclose(model.mean, train_features.mean(axis=0))

    def test_constant_feature_column_is_tolerated(self, train_features):
        features = train_features.copy()
        features[:, 0] = 3.0
        model = OneClassGMM().fit(features, components=1)
        assert model.std[0] == 1.0
        assert np.all(np.isfinite(model.score(features)))

    def test_bic_chooses_among_supported_candidates(self, train_features):
        model = OneClassGMM().fit(train_features)
        assert model.bic is not None and model.components in model.bic
        assert set(model.bic) <= set(COMPONENT_CANDIDATES)
        assert model.bic[model.components] == min(model.bic.values())
        assert all(len(train_features) >= k * (F + 1) for k in model.bic)

    @pytest.mark.parametrize("covariance", ["full", "diag"])
    def test_json_round_trip_scores_identically(self, crops, train_features, covariance):
        model = OneClassGMM().fit(train_features, components=2, covariance=covariance)
        text = json.dumps(model.to_json())
        restored = OneClassGMM.from_json(json.loads(text))
        probe = iqm_features(np.concatenate([crops["held_out"], crops["halftone"]]))
        np.testing.assert_array_equal(restored.score(probe), model.score(probe))
        assert restored.to_json() == model.to_json()
        assert restored.samples == model.samples

    def test_baseline_model_round_trips_with_its_feature_names(self, crops, model):
        restored = OneClassGMM.from_json(json.loads(json.dumps(model.to_json())))
        assert restored.feature_names == IQM_FEATURE_NAMES
        np.testing.assert_array_equal(score_baseline(restored, crops["blur"]), score_baseline(model, crops["blur"]))


class TestRanking:
    @pytest.mark.parametrize("attack", ["halftone", "noise", "blur"])
    def test_attacks_score_above_held_out_live_crops(self, crops, model, attack):
        live = score_baseline(model, crops["held_out"])
        spoof = score_baseline(model, crops[attack])
        labels = np.r_[np.zeros(len(live)), np.ones(len(spoof))]
        assert roc_auc_score(labels, np.r_[live, spoof]) > 0.9

    def test_chunked_input_scores_as_one_array(self, crops, model):
        whole = score_baseline(model, crops["halftone"])
        chunked = score_baseline(model, (crops["halftone"][i : i + 30] for i in range(0, 100, 30)))
        np.testing.assert_array_equal(chunked, whole)


class TestErrors:
    def test_too_few_live_crops_names_the_count(self, crops):
        with pytest.raises(ValueError, match=r"at least 43 live training samples; got 10"):
            fit_baseline(crops["train"][:10])

    def test_too_few_for_the_requested_components(self, train_features):
        with pytest.raises(ValueError, match=r"8-component .* at least 344 .* got 200"):
            OneClassGMM().fit(train_features, components=8)

    @pytest.mark.parametrize(
        ("crops", "expected"),
        [
            (np.zeros((2, 16, 16, 3), np.float32), "uint8"),
            ([[[[0, 0, 0]]]], "uint8"),
            (np.zeros((2, 16, 16), np.uint8), r"\(N, H, W, 3\)"),
            (np.zeros((2, 16, 16, 4), np.uint8), r"\(N, H, W, 3\)"),
            (np.zeros((2, 3, 16, 16), np.uint8), r"\(N, H, W, 3\)"),
            (np.zeros((2, 1, 16, 3), np.uint8), "at least 2x2"),
        ],
    )
    def test_wrong_crops_say_what_is_expected(self, crops, expected):
        with pytest.raises(ValueError, match=expected):
            iqm_features(crops)

    @pytest.mark.parametrize("components", [0, -1, 1.5, True, "2"])
    def test_bad_components(self, train_features, components):
        with pytest.raises(ValueError, match="positive integer"):
            OneClassGMM().fit(train_features, components=components)

    def test_non_finite_features(self, train_features):
        features = train_features.copy()
        features[3, 2] = np.nan
        with pytest.raises(ValueError, match="1 of 200 rows"):
            OneClassGMM().fit(features)

    def test_score_with_the_wrong_number_of_features(self, train_features):
        model = OneClassGMM().fit(train_features, components=1)
        with pytest.raises(ValueError, match=f"must have {F} columns"):
            model.score(train_features[:, :-1])

    def test_unfitted_model(self, train_features):
        with pytest.raises(ValueError, match="not fitted"):
            OneClassGMM().score(train_features)
        with pytest.raises(ValueError, match="not fitted"):
            OneClassGMM().to_json()

    def test_from_json_rejects_other_documents(self, train_features):
        with pytest.raises(ValueError, match="expected format"):
            OneClassGMM.from_json({"format": "something/else"})
        broken = OneClassGMM().fit(train_features, components=1).to_json()
        broken["weights"] = [0.5, 0.5]
        with pytest.raises(ValueError, match="inconsistent"):
            OneClassGMM.from_json(broken)
        del broken["means"]
        with pytest.raises(ValueError, match="lacks the key 'means'"):
            OneClassGMM.from_json(broken)

    def test_score_baseline_rejects_a_model_of_other_features(self, crops, train_features):
        other = OneClassGMM().fit(train_features, components=1, feature_names=[f"f{i}" for i in range(F)])
        with pytest.raises(ValueError, match="IQM_FEATURE_NAMES"):
            score_baseline(other, crops["held_out"])
