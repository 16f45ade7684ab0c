import numpy as np
import pytest
import torch

from liveness.config import ModelParams
from liveness.data.memory import CropArrayDataset, make_smoke_crops
from liveness.evaluate.scoring import SCORE_NAMES, decompose, load_generator, score_dataset
from liveness.model.factory import build_generator
from liveness.model.score import score_components
from liveness.train.runtime import images_to_model_input, resolve_runtime

TINY = ModelParams(profile="tiny", image_size=32)
CPU = resolve_runtime("cpu", "fp32")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return build_generator(TINY)


@pytest.fixture(scope="module")
def dataset():
    return CropArrayDataset(make_smoke_crops(7, 32, seed=4))


class TestScoreDataset:
    def test_batched_scores_equal_item_by_item_scores_in_order(self, generator, dataset):
        batched = score_dataset(generator, dataset, CPU, batch_size=3)  # 3 + 3 + 1: a ragged last batch
        with torch.no_grad():
            alone = [score_components(x, generator.eval()(x, with_clear_face=False))
                     for x in (images_to_model_input(dataset[i][None], CPU) for i in range(len(dataset)))]
        assert set(batched) == set(SCORE_NAMES)
        for name in SCORE_NAMES:
            expected = np.array([float(item[name][0]) for item in alone])
            assert batched[name].dtype == np.float64 and batched[name].shape == (len(dataset),)
            np.testing.assert_allclose(batched[name], expected, rtol=1e-5, atol=1e-7)
            assert np.ptp(batched[name]) > 0, "items must differ, or order would not be tested"

    def test_restores_training_mode(self, dataset):
        generator = build_generator(TINY).train()
        score_dataset(generator, dataset, CPU, batch_size=4)
        assert generator.training

    def test_decompose_shapes(self, generator, dataset):
        crops = torch.stack([dataset[i] for i in range(2)])
        parts = decompose(generator, crops, CPU)
        for name in ("image", "clear_face", "reconstruction"):
            assert parts[name].shape == (2, 32, 32, 3) and parts[name].dtype == np.uint8
        np.testing.assert_array_equal(parts["image"], crops.numpy())  # [-1, 1] and back is lossless
        assert parts["latent_bg_map"].shape == (2, 8, 8) and (parts["latent_bg_map"] >= 0).all()


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
