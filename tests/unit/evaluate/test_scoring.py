import numpy as np
import pytest
import torch

from liveness.config import ModelParams
from liveness.data.memory import CropArrayDataset, make_smoke_crops
from liveness.bundle import load_generator
from liveness.evaluate.scoring import SCORE_NAMES, decompose, fit_score_statistics, score_dataset
from liveness.model.factory import build_generator
from liveness.model.score import BASE_SCORES, score_components
from liveness.runtime import images_to_model_input, resolve_runtime

TINY = ModelParams(profile="tiny", image_size=32)
CPU = resolve_runtime("cpu", "fp32")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return build_generator(TINY.width_profile())


@pytest.fixture(scope="module")
def dataset():
    return CropArrayDataset(make_smoke_crops(7, 32, seed=4))


class TestScoreDataset:
    @pytest.mark.parametrize("with_statistics", [False, True])
    def test_batched_scores_equal_item_by_item_scores_in_order(self, generator, dataset, with_statistics):
        statistics = fit_score_statistics(generator, dataset, CPU, batch_size=4) if with_statistics else None
        batched = score_dataset(generator, dataset, CPU, batch_size=3, statistics=statistics)  # 3 + 3 + 1: ragged
        with torch.no_grad():
            alone = [score_components(x, generator.eval()(x, with_clear_face=False), statistics)
                     for x in (images_to_model_input(dataset[i][None], CPU) for i in range(len(dataset)))]
        names = SCORE_NAMES if with_statistics else BASE_SCORES
        assert set(batched) == set(names)
        for name in names:
            expected = np.array([float(item[name][0]) for item in alone])
            assert batched[name].dtype == np.float64 and batched[name].shape == (len(dataset),)
            # z-scores divide float32 conv noise by a tiny live std (random weights): compare them in z units
            atol = 1e-3 if name == "fused" else 1e-7
            np.testing.assert_allclose(batched[name], expected, rtol=1e-5, atol=atol)
            assert np.ptp(batched[name]) > 0, "items must differ, or order would not be tested"

    def test_restores_training_mode(self, dataset):
        generator = build_generator(TINY.width_profile()).train()
        score_dataset(generator, dataset, CPU, batch_size=4)
        assert generator.training

    def test_decompose_shapes(self, generator, dataset):
        crops = torch.stack([dataset[i] for i in range(2)])
        parts = decompose(generator, crops, CPU)
        for name in ("image", "clear_face", "reconstruction"):
            assert parts[name].shape == (2, 32, 32, 3) and parts[name].dtype == np.uint8
        np.testing.assert_array_equal(parts["image"], crops.numpy())  # [-1, 1] and back is lossless
        assert parts["latent_bg_map"].shape == (2, 8, 8) and (parts["latent_bg_map"] >= 0).all()


class TestFitScoreStatistics:
    def test_statistics_are_those_of_the_given_live_crops(self, generator, dataset):
        statistics = fit_score_statistics(generator, dataset, CPU, batch_size=3)
        images = torch.cat([images_to_model_input(dataset[i][None], CPU) for i in range(len(dataset))])
        with torch.no_grad():
            background = generator.eval().encoder(images).background
        expected_std = background.transpose(0, 1).flatten(1).double().std(dim=1, unbiased=False)
        np.testing.assert_allclose(statistics.background_std, expected_std.numpy(), rtol=1e-5)
        scores = score_dataset(generator, dataset, CPU, batch_size=7, statistics=statistics)
        for name in statistics.fusion:
            # batch sizes differ (3 vs 7): float32 conv rounding moves the scores in the ~6th digit
            assert statistics.score_mean[name] == pytest.approx(scores[name].mean(), rel=1e-4)
            assert statistics.score_std[name] == pytest.approx(scores[name].std(ddof=1), rel=1e-3)
        assert statistics.samples == len(dataset)
        # z-scored on its own data, the fused score averages to zero
        assert scores["fused"].mean() == pytest.approx(0.0, abs=1e-2)

    def test_other_crops_give_other_statistics(self, generator, dataset):
        other = CropArrayDataset(make_smoke_crops(7, 32, seed=11))
        first = fit_score_statistics(generator, dataset, CPU, batch_size=4)
        second = fit_score_statistics(generator, other, CPU, batch_size=4)
        assert first.score_mean != second.score_mean

    def test_needs_two_crops(self, generator):
        with pytest.raises(ValueError, match="at least 2 live crops"):
            fit_score_statistics(generator, CropArrayDataset(make_smoke_crops(1, 32, seed=1)), CPU, batch_size=4)


class TestLoadGenerator:
    def test_round_trip(self, tmp_path, generator):
        torch.save(generator.state_dict(), tmp_path / "generator.pt")
        loaded = load_generator(tmp_path, TINY)
        for name, tensor in generator.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[name], tensor)

    def test_missing_weights_name_the_file_and_say_to_train(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"generator\.pt not found; run training"):
            load_generator(tmp_path / "runs", TINY)

    def test_mismatched_profile_says_which_model_section_to_set(self, tmp_path, generator):
        torch.save(generator.state_dict(), tmp_path / "generator.pt")
        with pytest.raises(ValueError, match=r"model\.profile='small'"):
            load_generator(tmp_path, ModelParams(profile="small", image_size=32))
