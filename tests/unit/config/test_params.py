import pytest

from liveness.config import ConfigError, load_params, parse_params
from tests.fixtures.paths import PROJECT_ROOT


class TestLoadParams:
    def test_project_params_file_is_valid(self):
        params = load_params(PROJECT_ROOT / "params.yaml")
        assert params.model.image_size == params.curate.crop.size == params.spoof.crop.size
        assert params.train.betas == (0.9, 0.999)

    def test_unknown_key_names_the_key(self, tmp_path):
        path = tmp_path / "params.yaml"
        path.write_text("train:\n  epoch: 3\n")
        with pytest.raises(ConfigError, match=r"train\.epoch: unknown key"):
            load_params(path)

    def test_unknown_section_names_the_section(self):
        with pytest.raises(ConfigError, match=r"trian: unknown key"):
            parse_params({"trian": {"epochs": 1}})

    def test_overrides_use_dotted_keys(self, tmp_path):
        path = tmp_path / "params.yaml"
        path.write_text("train:\n  epochs: 3\n")
        params = load_params(path, {"train.epochs": 7, "model.profile": "tiny"})
        assert params.train.epochs == 7 and params.model.profile == "tiny"

    def test_missing_file_says_what_to_do(self, tmp_path):
        with pytest.raises(ConfigError, match="not found"):
            load_params(tmp_path / "nope.yaml")

    def test_non_mapping_yaml_is_rejected(self, tmp_path):
        path = tmp_path / "params.yaml"
        path.write_text("- a\n- b\n")
        with pytest.raises(ConfigError, match="mapping"):
            load_params(path)


class TestValidation:
    @pytest.mark.parametrize("size", [66, 30, 129])
    def test_image_size_must_be_divisible_by_four(self, size):
        with pytest.raises(ConfigError, match="model.image_size"):
            parse_params({"model": {"image_size": size}})

    def test_unknown_profile(self):
        with pytest.raises(ConfigError, match="unknown width profile"):
            parse_params({"model": {"profile": "huge"}})

    def test_unknown_identity_backbone(self):
        with pytest.raises(ConfigError, match="identity.backbone"):
            parse_params({"identity": {"backbone": "arcface"}})

    @pytest.mark.parametrize("betas", [[0.9, 1.0], [-0.1, 0.9]])
    def test_betas_range(self, betas):
        with pytest.raises(ConfigError, match="train.betas"):
            parse_params({"train": {"betas": betas}})

    def test_patent_training_defaults(self):
        params = parse_params({})
        train = params.train
        assert (train.epochs, train.lr, train.betas) == (100, 1e-4, (0.9, 0.999))
        assert (params.model.profile, params.model.image_size) == ("patent", 128)
