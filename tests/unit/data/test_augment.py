"""Augmentation: a pure function of (seed, epoch, index), shape- and dtype-preserving, flip flips."""

import numpy as np
import pytest

from liveness.config import AugmentParams
from liveness.data.augment import augment_crop, epoch_rng


@pytest.fixture
def crop():
    return np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)


def test_deterministic_per_seed_epoch_index(crop):
    config = AugmentParams()
    first = augment_crop(crop, config, epoch_rng(1, 2, 3))
    assert np.array_equal(first, augment_crop(crop, config, epoch_rng(1, 2, 3)))
    assert first.dtype == np.uint8 and first.shape == crop.shape and first.flags.c_contiguous


def test_differs_across_epochs_and_indices(crop):
    config = AugmentParams()
    by_epoch = {augment_crop(crop, config, epoch_rng(0, epoch, 5)).tobytes() for epoch in range(4)}
    by_index = {augment_crop(crop, config, epoch_rng(0, 0, index)).tobytes() for index in range(4)}
    assert len(by_epoch) > 1 and len(by_index) > 1


def test_disabled_is_identity(crop):
    out = augment_crop(crop, AugmentParams(enabled=False), epoch_rng(0, 0, 0))
    assert np.array_equal(out, crop)


def test_flip_flips_and_zero_jitter_keeps_values(crop):
    config = AugmentParams(hflip_probability=1.0, brightness=0.0, contrast=0.0, saturation=0.0)
    assert np.array_equal(augment_crop(crop, config, epoch_rng(0, 0, 0)), crop[:, ::-1])
    never = AugmentParams(hflip_probability=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    assert np.array_equal(augment_crop(crop, never, epoch_rng(0, 0, 0)), crop)


def test_jitter_is_small_and_clipped(crop):
    config = AugmentParams(hflip_probability=0.0, brightness=0.1, contrast=0.0, saturation=0.0)
    out = augment_crop(crop, config, epoch_rng(0, 0, 0)).astype(int)
    assert np.abs(out - crop.astype(int)).max() <= 26
    white = np.full((4, 4, 3), 255, dtype=np.uint8)
    bright = AugmentParams(brightness=0.5, hflip_probability=0.0)
    assert all(augment_crop(white, bright, epoch_rng(0, 0, i)).min() >= 127 for i in range(8))  # no wrap-around


def test_bad_inputs_rejected(crop):
    with pytest.raises(ValueError, match="hflip_probability"):
        AugmentParams(hflip_probability=1.5)
    with pytest.raises(ValueError, match="brightness"):
        AugmentParams(brightness=-0.1)
    with pytest.raises(ValueError, match="uint8"):
        augment_crop(crop.astype(np.float32), AugmentParams(), epoch_rng(0, 0, 0))
