"""Which held-out crops the trainer scores for reconstruction quality."""

import numpy as np
import pandas as pd
import pytest

from liveness.data.memory import make_smoke_crops
from liveness.data.shards import ShardWriter, write_manifest
from liveness.train.stage import SMOKE, validation_crops
from tests.fixtures.params import tiny_params


@pytest.fixture
def curated(tmp_path):
    """A curated folder: 6 train crops, 3 val crops (crop i is filled with value i)."""
    crops = np.stack([np.full((32, 32, 3), index, dtype=np.uint8) for index in range(9)])
    with ShardWriter(tmp_path / "shards", 32, shard_size=4) as writer:
        places = [writer.add(crop) for crop in crops]
    splits = ["train"] * 6 + ["val"] * 3
    write_manifest(pd.DataFrame({
        "record_id": [f"r{i}" for i in range(9)], "source": "smoke", "path": [f"r{i}" for i in range(9)],
        "frame_index": -1, "subject": [f"s{i}" for i in range(9)], "label": "live", "species": "live",
        "split": splits, "synthetic": True, "shard": [p[0] for p in places],
        "index_in_shard": [p[1] for p in places], "reject_reason": "",
    }), tmp_path / "manifest.parquet")
    return tmp_path


class TestValidationCrops:
    def test_first_crops_of_the_val_split_unaugmented(self, curated):
        params = tiny_params(train={"val_count": 2, "augment": {"enabled": True, "hflip_probability": 1.0,
                                                                 "brightness": 0.5}})
        crops, description = validation_crops(params, str(curated))
        assert crops.dtype == np.uint8 and crops.shape == (2, 32, 32, 3)
        assert [int(crop[0, 0, 0]) for crop in crops] == [6, 7]
        assert "split val" in description

    def test_a_small_split_gives_all_it_has(self, curated):
        crops, _ = validation_crops(tiny_params(train={"val_count": 64}), str(curated))
        assert len(crops) == 3

    def test_smoke_crops_are_held_out_from_the_training_ones(self):
        params = tiny_params(train={"val_count": 4})
        crops, description = validation_crops(params, SMOKE)
        assert crops.shape == (4, 32, 32, 3) and "SYNTHETIC" in description
        assert not np.array_equal(crops, make_smoke_crops(4, 32, params.base.seed))
        assert np.array_equal(crops, validation_crops(params, SMOKE)[0])

    def test_null_split_scores_nothing(self, curated):
        crops, description = validation_crops(tiny_params(train={"val_split": None}), str(curated))
        assert crops is None and "val_split is null" in description

    def test_missing_split_scores_nothing(self, curated):
        crops, description = validation_crops(tiny_params(train={"val_split": "holdout"}), str(curated))
        assert crops is None and "'holdout' is not in" in description

    def test_npy_file_has_no_split(self, tmp_path):
        path = tmp_path / "crops.npy"
        np.save(path, make_smoke_crops(4, 32))
        crops, _ = validation_crops(tiny_params(), str(path))
        assert crops is None
