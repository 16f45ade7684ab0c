"""Light training augmentation of uint8 face crops: horizontal flip and small colour jitter.

The augmentation of item ``i`` at epoch ``e`` draws only from ``np.random.default_rng([seed, e, i])``, so it is
a pure function of (seed, epoch, index): a resumed run, or one with a different number of DataLoader workers,
sees exactly the same images.
"""

from __future__ import annotations

import numpy as np

from liveness.config import AugmentParams

# ITU-R BT.601 luma weights, the grey that saturation jitter moves towards or away from.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def epoch_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for item ``index`` at ``epoch``: the only randomness its augmentation may use."""
    return np.random.default_rng([seed, epoch, index])


def augment_crop(crop: np.ndarray, config: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    """A flipped and colour-jittered copy of ``crop`` (uint8 (H, W, 3)); ``crop`` itself when disabled.

    All four random numbers are drawn every time, in a fixed order, so changing one setting does not shift the
    others' draws.
    """
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[-1] != 3:
        raise ValueError(f"augment_crop expects a uint8 (H, W, 3) crop, got {crop.dtype} {crop.shape}")
    if not config.enabled:
        return crop
    flip = rng.random() < config.hflip_probability
    brightness, contrast, saturation = rng.uniform(-1.0, 1.0, size=3)
    image = crop[:, ::-1] if flip else crop
    if config.brightness or config.contrast or config.saturation:
        image = _jitter(image, 1.0 + brightness * config.brightness, 1.0 + contrast * config.contrast,
                        1.0 + saturation * config.saturation)
    return np.ascontiguousarray(image)


def _jitter(image: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """Scale brightness, then contrast about the mean grey, then saturation about each pixel's grey."""
    pixels = image.astype(np.float32) * np.float32(brightness)
    grey = pixels @ _LUMA
    mean = np.float32(grey.mean())
    pixels = (pixels - mean) * np.float32(contrast) + mean
    grey = pixels @ _LUMA
    pixels = (pixels - grey[..., None]) * np.float32(saturation) + grey[..., None]
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
