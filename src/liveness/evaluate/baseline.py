"""The classical one-class PAD baseline (DESIGN §2.3): image-quality measures per face crop, scored by a Gaussian
mixture fitted on live training crops only (Nikisins et al. 2018, the bob.pad.face ``qm_one_class_gmm`` recipe).

A crop's score is its negative log-likelihood under the mixture, so HIGHER means MORE LIKELY an attack, as
everywhere in ``liveness.evaluate``. Features and scores are per sample: a row depends on its own crop only.

Features (``IQM_FEATURE_NAMES``, 42 per crop). All are computed with numpy and OpenCV, vectorised over a chunk.

Galbally et al. 2014, the 18 measures bob.ip.qualitymeasure returns. The reference is the grey crop ``I`` (ITU-R
BT.601 luma, 0..255; bob feeds a Matlab-style luma scaled to [16/255, 235/255] while keeping PSNR's peak at 255)
and the "test" image is its copy ``J`` smoothed by a 3x3 Gaussian (sigma 0.5, symmetric borders): smoothing
degrades a recaptured image less than a live one, so the distance says how sharp the crop was.

- as published: MSE, PSNR (peak 255), SC (sum I^2 / sum J^2), NK (sum IJ / sum I^2), MD (max absolute
  difference), LMSE (Laplacian error over Laplacian energy of I), NAE, SNRv (dB).
- AD (mean signed difference) is kept for the published list, but a normalised symmetric smoothing with symmetric
  borders preserves the mean, so it is zero up to rounding (in bob too); values below 1e-9 grey levels are set
  to 0 so that rounding noise cannot become a standardised dimension.
- RAMD: mean of the 10 largest absolute differences (the paper's R-averaged MD); bob takes the square root of the
  mean of the 10 largest signed differences.
- MAS, MAMS: the rows of I and J as vectors (as bob does for grey images), averaged over rows; MAMS normalises a
  row's difference norm by its largest possible value, 255 * sqrt(width).
- SME: mean squared difference of spectral magnitudes, with an orthonormal FFT (a scale change only).
- GME, GPE: mean squared difference of gradient magnitude and of gradient phase (central differences); the phase
  difference is the angle of G_I * conj(G_J), i.e. wrapped to (-pi, pi] and 0 where either gradient vanishes.
  bob uses absolute differences, a 5-pixel spacing and unwrapped phase differences.
- SSIM: Gaussian window 11 / sigma 1.5 (Wang et al. 2004), averaged over the whole crop with reflected borders.
  Adapted: bob averages the "valid" region only (returns -inf below 11 px) and, by a slip, subtracts mu_I^2 from
  E[J^2]; we use the published sigma_J^2.
- VIF: pixel-domain VIF (Sheikh & Bovik) at ONE scale (17-tap Gaussian, sigma 3.4, reflected borders, noise
  variance 2). Adapted: the published four dyadic scales shrink a 64 px crop to 8 px and below, where the
  variance estimates are meaningless.
- HLFI (no-reference, on I): (low - high) / total spectral magnitude, low = frequencies with |f_x| <= 0.075
  cycles/px (15% of the columns, centred on DC). bob indexes the unshifted FFT, so its "low" band sits at Nyquist,
  and it takes the absolute value.

Wen et al. 2015 (MSU) features, condensed from bob's 121 values to 24:

- specular reflection (3): ratio of specular pixels and the mean and std of their specular component, with
  Wen's band [1.5, 4) x the crop's mean specular value. Adapted: Tan et al.'s iterative specular/diffuse
  separation (C++ in bob) is replaced by the min-channel estimate of the dichromatic model,
  ``max(0, min(R, G, B) - mean over the crop of min(R, G, B))``. No /150 scaling (standardisation absorbs it).
- blurriness (2): Crete et al.'s no-reference blur (9-tap mean filter, vertical filter for vertical differences
  and horizontal for horizontal, absolute differences, the larger of the two), and Marziliano et al.'s mean edge
  width in pixels at Sobel vertical-edge pixels (gradient^2 > 4 x its mean, thinned along the row), the width being
  the monotone run to the left plus the one to the right. bob filters Crete's image across the wrong axis and
  clips signed differences instead of taking absolute ones, and divides Marziliano by 30.
- chromatic moments (15): per HSV channel (hue shifted by half a turn, as MSU does) mean, std, skewness and the
  share of pixels in the two lowest and two highest of 20 histogram bins centred on 0.05, ..., 1.0 (<= 0.125,
  > 0.925).
- colour diversity (4): with 32 levels per channel, the shares of the 1, 10 and 100 most frequent colours and the
  number of colours covering 99% of the pixels. Adapted: bob keeps all 100 top-colour counts, which at 64 px
  (4096 pixels) are mostly zero and would dominate the mixture's dimensions.

Degenerate crops (constant, black, white, tiny) get finite values: a ratio with a zero denominator takes the value
of "no distortion" (SC, NK, VIF, SSIM 1; LMSE, NAE 0; Crete blur 1), and MSE is floored at 1e-6 inside PSNR/SNRv.

The mixture, against the published recipe (bob.pad.base ``OneClassGMM`` with qm_one_class_gmm's settings: 64x64
crops, 18 + 121 features, 50 components): same mean/std standardisation on the live training features (a zero std
is replaced by 1), same full covariance and scikit-learn ``GaussianMixture``. Differences: 42 features instead of
139; reg_covar 1e-3 instead of 1e-6 (several measures are near-collinear, e.g. MSE, PSNR, SNRv); the number of
components is chosen by BIC over ``COMPONENT_CANDIDATES`` (1 to 32, as far as the sample count supports and BIC
keeps falling) instead of a fixed 50; seed 0 instead of 3; and the score is the negative log-likelihood, where bob
reports the log-likelihood (higher = bona fide). Scoring is our own numpy evaluation of the fitted densities, so a
model restored from JSON scores exactly as the fitted one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import cv2
import numpy as np
from sklearn.mixture import GaussianMixture

__all__ = [
    "COMPONENT_CANDIDATES",
    "IQM_FEATURE_NAMES",
    "OneClassGMM",
    "fit_baseline",
    "iqm_features",
    "score_baseline",
]

_GALBALLY_NAMES = (
    "psnr", "mse", "ad", "sc", "nk", "md", "lmse", "nae", "snrv", "ramd",
    "mas", "mams", "sme", "gme", "gpe", "ssim", "vif", "hlfi",
)  # fmt: skip
_MOMENT_NAMES = tuple(f"{channel}_{stat}" for channel in "hsv" for stat in ("mean", "std", "skew", "low", "high"))
_MSU_NAMES = (
    ("spec_ratio", "spec_mean", "spec_std", "blur_crete", "blur_marziliano")
    + _MOMENT_NAMES
    + ("colour_top1", "colour_top10", "colour_top100", "colour_count99")
)
IQM_FEATURE_NAMES: tuple[str, ...] = _GALBALLY_NAMES + _MSU_NAMES
"""Column names of ``iqm_features``: Galbally et al.'s 18 measures, then the condensed MSU features."""

COMPONENT_CANDIDATES: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
"""Mixture sizes tried in turn when ``components`` is not given, while the sample count supports them and BIC
keeps falling; the last one that lowered BIC is kept."""

MIN_SIDE = 2  # smallest crop height/width: gradients need two pixels per axis
CHUNK = 128  # crops per feature chunk: peak ~90 MB of float64 intermediates at 64 px
REG_COVAR = 1e-3  # on standardised features
_MSE_FLOOR = 1e-6  # caps PSNR at ~108 dB for a crop its smoothing leaves unchanged
_PEAK = 255.0
_RAMD_R = 10
_AD_NOISE = 1e-9  # grey levels; AD is rounding noise below this
_SSIM_C1 = (0.01 * _PEAK) ** 2
_SSIM_C2 = (0.03 * _PEAK) ** 2
_VIF_NOISE = 2.0
_VIF_EPS = 1e-10
_HLFI_LOW = 0.075  # cycles/px: 15% of the [-0.5, 0.5) range, centred on DC
_CRETE_TAPS = 9
_COLOUR_SHIFT = 3  # 256 / 2**3 = 32 levels per channel
_FORMAT = "liveness.iqm_gmm/1"


# ---------------------------------------------------------------------------------------------------------------
# features


def _gauss_kernel(taps: int, sigma: float) -> np.ndarray:
    x = np.arange(taps, dtype=np.float64) - (taps - 1) / 2.0
    kernel = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


_SMOOTH = _gauss_kernel(3, 0.5)
_SSIM_WINDOW = _gauss_kernel(11, 1.5)
_VIF_WINDOW = _gauss_kernel(17, 17 / 5.0)


def _filter(images: np.ndarray, along_y: np.ndarray, along_x: np.ndarray | None = None) -> np.ndarray:
    """Separable correlation of each (H, W) image of a float64 (N, H, W) stack with symmetric borders
    (``fedcba|abcdef``), one image at a time so that no image touches another. ``along_x`` defaults to ``along_y``.
    """
    along_x = along_y if along_x is None else along_x
    images = np.ascontiguousarray(images, dtype=np.float64)
    out = np.empty_like(images)
    for image, result in zip(images, out):
        cv2.sepFilter2D(image, cv2.CV_64F, along_x, along_y, dst=result, borderType=cv2.BORDER_REFLECT)
    return out


def _mean(values: np.ndarray) -> np.ndarray:
    return values.reshape(values.shape[0], -1).mean(axis=1)


def _sum(values: np.ndarray) -> np.ndarray:
    return values.reshape(values.shape[0], -1).sum(axis=1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, default: float) -> np.ndarray:
    """numerator / denominator, ``default`` where the denominator is zero."""
    zero = denominator == 0
    return np.where(zero, default, numerator / np.where(zero, 1.0, denominator))


_IDENTITY = np.array([1.0])
_SECOND_DIFFERENCE = np.array([1.0, -2.0, 1.0])


def _laplacian(images: np.ndarray) -> np.ndarray:
    """The 5-point Laplacian of each image (symmetric borders)."""
    return _filter(images, _SECOND_DIFFERENCE, _IDENTITY) + _filter(images, _IDENTITY, _SECOND_DIFFERENCE)


def _ssim(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    mu_r, mu_t = _filter(ref, _SSIM_WINDOW), _filter(test, _SSIM_WINDOW)
    var_r = _filter(ref * ref, _SSIM_WINDOW) - mu_r * mu_r
    var_t = _filter(test * test, _SSIM_WINDOW) - mu_t * mu_t
    cov = _filter(ref * test, _SSIM_WINDOW) - mu_r * mu_t
    ssim_map = ((2 * mu_r * mu_t + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_r * mu_r + mu_t * mu_t + _SSIM_C1) * (var_r + var_t + _SSIM_C2)
    )
    return _mean(ssim_map)


def _vif(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Pixel-domain VIF at one scale; the conditioning of g and the distortion variance follows LIVE's vifp."""
    mu_r, mu_t = _filter(ref, _VIF_WINDOW), _filter(test, _VIF_WINDOW)
    var_r = np.maximum(_filter(ref * ref, _VIF_WINDOW) - mu_r * mu_r, 0.0)
    var_t = np.maximum(_filter(test * test, _VIF_WINDOW) - mu_t * mu_t, 0.0)
    cov = _filter(ref * test, _VIF_WINDOW) - mu_r * mu_t
    gain = cov / (var_r + _VIF_EPS)
    flat_ref, flat_test = var_r < _VIF_EPS, var_t < _VIF_EPS
    anti = ~(flat_ref | flat_test) & (gain < 0)  # negatively correlated: all of J's variance is distortion
    var_v = np.where(flat_test, 0.0, np.where(flat_ref | anti, var_t, var_t - gain * cov))
    gain = np.where(flat_ref | flat_test | anti, 0.0, gain)
    var_r = np.where(flat_ref, 0.0, var_r)
    var_v = np.maximum(var_v, _VIF_EPS)
    kept = _sum(np.log10(1.0 + gain * gain * var_r / (var_v + _VIF_NOISE)))
    available = _sum(np.log10(1.0 + var_r / _VIF_NOISE))
    return _ratio(kept, available, 1.0)


def _galbally(ref: np.ndarray) -> np.ndarray:
    """Galbally et al.'s 18 measures of (N, H, W) grey images against their smoothed copies, as (N, 18)."""
    n, height, width = ref.shape
    test = _filter(ref, _SMOOTH)
    diff = ref - test
    absdiff = np.abs(diff)
    sum_ref2 = _sum(ref * ref)
    sum_diff2 = _sum(diff * diff)

    mse = sum_diff2 / (height * width)
    psnr = 10.0 * np.log10(_PEAK * _PEAK / np.maximum(mse, _MSE_FLOOR))
    ad = _mean(diff)
    ad = np.where(np.abs(ad) < _AD_NOISE, 0.0, ad)
    sc = _ratio(sum_ref2, _sum(test * test), 1.0)
    nk = _ratio(_sum(ref * test), sum_ref2, 1.0)
    md = absdiff.reshape(n, -1).max(axis=1)
    lap_ref = _laplacian(ref)
    lap_diff = lap_ref - _laplacian(test)
    lmse = _ratio(_sum(lap_diff * lap_diff), _sum(lap_ref * lap_ref), 0.0)
    nae = _ratio(_sum(absdiff), _sum(np.abs(ref)), 0.0)
    snrv = 10.0 * np.log10(np.maximum(sum_ref2 / (height * width), _MSE_FLOOR) / np.maximum(mse, _MSE_FLOOR))
    flat_abs = absdiff.reshape(n, -1)
    r = min(_RAMD_R, flat_abs.shape[1])
    ramd = np.partition(flat_abs, flat_abs.shape[1] - r, axis=1)[:, -r:].mean(axis=1)

    # rows as vectors: angle between a row of I and the same row of J
    norm_ref = np.sqrt(np.sum(ref * ref, axis=2))
    norm_test = np.sqrt(np.sum(test * test, axis=2))
    both = norm_ref * norm_test
    cosine = np.where(both > 0, np.sum(ref * test, axis=2) / np.where(both > 0, both, 1.0), 0.0)
    cosine = np.where((norm_ref == 0) & (norm_test == 0), 1.0, cosine)
    angle = np.arccos(np.clip(cosine, -1.0, 1.0)) * (2.0 / np.pi)  # in [0, 1]
    magnitude = np.sqrt(np.sum(diff * diff, axis=2)) / (_PEAK * math.sqrt(width))
    mas = 1.0 - angle.mean(axis=1)
    mams = (1.0 - (1.0 - angle) * (1.0 - magnitude)).mean(axis=1)

    # half spectra (real input); ``twice`` counts the mirrored columns so sums cover the full spectrum
    spectrum_ref = np.abs(np.fft.rfft2(ref, axes=(1, 2), norm="ortho"))
    spectrum_test = np.abs(np.fft.rfft2(test, axes=(1, 2), norm="ortho"))
    columns = spectrum_ref.shape[2]
    twice = np.full(columns, 2.0)
    twice[0] = 1.0
    if width % 2 == 0:
        twice[-1] = 1.0
    sme = _sum((spectrum_ref - spectrum_test) ** 2 * twice) / (height * width)

    gy_r, gx_r = np.gradient(ref, axis=(1, 2))
    gy_t, gx_t = np.gradient(test, axis=(1, 2))
    gme = _mean((np.sqrt(gx_r * gx_r + gy_r * gy_r) - np.sqrt(gx_t * gx_t + gy_t * gy_t)) ** 2)
    # the angle of G_I * conj(G_J): the phase difference wrapped to (-pi, pi], 0 where either gradient vanishes
    phase = np.arctan2(gy_r * gx_t - gx_r * gy_t, gx_r * gx_t + gy_r * gy_t)
    gpe = _mean(phase * phase)

    ssim = _ssim(ref, test)
    vif = _vif(ref, test)

    weights = twice * (np.abs(np.fft.rfftfreq(width)) <= _HLFI_LOW)
    total = _sum(spectrum_ref * twice)
    low_energy = _sum(spectrum_ref * weights)
    hlfi = _ratio(low_energy - (total - low_energy), total, 0.0)

    return np.stack(
        [psnr, mse, ad, sc, nk, md, lmse, nae, snrv, ramd, mas, mams, sme, gme, gpe, ssim, vif, hlfi], axis=1
    )


def _specular(rgb_uint8: np.ndarray) -> np.ndarray:
    """(N, 3): share of specular pixels, mean and std of their specular component (grey levels)."""
    n = rgb_uint8.shape[0]
    darkest = rgb_uint8.min(axis=3).reshape(n, -1).astype(np.float64)
    spec = np.maximum(darkest - darkest.mean(axis=1, keepdims=True), 0.0)
    level = spec.mean(axis=1, keepdims=True)
    band = (spec >= 1.5 * level) & (spec < 4.0 * level)
    count = np.count_nonzero(band, axis=1).astype(np.float64)
    in_band = np.where(band, spec, 0.0)
    mean = _ratio(in_band.sum(axis=1), count, 0.0)
    second = _ratio((in_band * in_band).sum(axis=1), count, 0.0)
    std = np.sqrt(np.maximum(second - mean * mean, 0.0))
    return np.stack([count / spec.shape[1], mean, std], axis=1)


def _crete_blur(grey: np.ndarray) -> np.ndarray:
    box = np.full(_CRETE_TAPS, 1.0 / _CRETE_TAPS)
    blur = []
    for axis, smoothed in ((1, _filter(grey, box, _IDENTITY)), (2, _filter(grey, _IDENTITY, box))):
        d_sharp = np.abs(np.diff(grey, axis=axis))
        d_blurred = np.abs(np.diff(smoothed, axis=axis))
        variation = _sum(d_sharp)
        lost = _sum(np.maximum(d_sharp - d_blurred, 0.0))
        blur.append(_ratio(variation - lost, variation, 1.0))
    return np.maximum(blur[0], blur[1])


def _runs(steps_ok: np.ndarray) -> np.ndarray:
    """For (N, H, W-1) booleans "step c -> c+1 continues the run", the run length ending at each of W columns."""
    n, height, steps = steps_ok.shape
    columns = np.arange(steps + 1)
    breaks = np.ones((n, height, steps + 1), dtype=bool)
    breaks[:, :, 1:] = ~steps_ok
    last_break = np.maximum.accumulate(np.where(breaks, columns, 0), axis=2)
    return columns - last_break


def _marziliano_blur(grey: np.ndarray) -> np.ndarray:
    """Mean width (px) of vertical edges: monotone run left + right of each thinned Sobel edge pixel."""
    gx = _filter(grey, np.array([1.0, 2.0, 1.0]), np.array([-1.0, 0.0, 1.0]))  # Sobel, horizontal gradient
    strength = gx * gx
    padded = np.pad(strength, ((0, 0), (0, 0), (1, 1)), mode="constant", constant_values=-1.0)
    thin = (strength >= padded[:, :, :-2]) & (strength > padded[:, :, 2:])
    edges = thin & (strength > 4.0 * _mean(strength)[:, None, None])
    step = np.diff(grey, axis=2)
    rising = _runs(step[:, :, ::-1] >= 0)[:, :, ::-1] + _runs(step >= 0)
    falling = _runs(step[:, :, ::-1] <= 0)[:, :, ::-1] + _runs(step <= 0)
    width = np.where(gx >= 0, rising, falling)
    count = _sum(edges).astype(np.float64)
    return _ratio(_sum(np.where(edges, width, 0)).astype(np.float64), count, 0.0)


def _moments(rgb_uint8: np.ndarray) -> np.ndarray:
    """(N, 15): per HSV channel mean, std, skewness, share <= 0.125 and share > 0.925."""
    n, height, width, _ = rgb_uint8.shape
    scaled = rgb_uint8.reshape(n * height, width, 3).astype(np.float32) / np.float32(255.0)
    hsv = cv2.cvtColor(scaled, cv2.COLOR_RGB2HSV).reshape(n, height * width, 3).transpose(0, 2, 1)
    hsv = np.ascontiguousarray(hsv, dtype=np.float64)  # (N, 3, pixels)
    hue = hsv[:, 0] / 360.0 + 0.5
    hsv[:, 0] = np.where(hue >= 1.0, hue - 1.0, hue)
    mean = hsv.mean(axis=2)
    centred = hsv - mean[:, :, None]
    std = np.sqrt((centred * centred).mean(axis=2))
    safe_std = np.where(std > 0, std, 1.0)
    standard = centred / safe_std[:, :, None]
    skew = np.where(std > 0, (standard * standard * standard).mean(axis=2), 0.0)
    low = np.count_nonzero(hsv <= 0.125, axis=2) / hsv.shape[2]
    high = np.count_nonzero(hsv > 0.925, axis=2) / hsv.shape[2]
    return np.stack([mean, std, skew, low, high], axis=2).reshape(n, 15)


def _colour_diversity(rgb_uint8: np.ndarray) -> np.ndarray:
    """(N, 4): shares of the 1, 10 and 100 most frequent colours (32 levels per channel), colours for 99%."""
    n = rgb_uint8.shape[0]
    levels = (rgb_uint8 >> _COLOUR_SHIFT).astype(np.int64).reshape(n, -1, 3)
    pixels = levels.shape[1]
    codes = np.sort((levels[:, :, 0] << 10) | (levels[:, :, 1] << 5) | levels[:, :, 2], axis=1)
    new = np.ones(codes.shape, dtype=bool)
    new[:, 1:] = codes[:, 1:] != codes[:, :-1]
    starts = np.flatnonzero(new.ravel())  # every row starts a colour, so no colour spans two rows
    row = starts // pixels
    counts = np.diff(np.append(starts, n * pixels))
    # one sort orders the rows and, inside a row, the colours by falling count
    key = np.sort(row * (pixels + 1) + (pixels - counts))
    counts = pixels - key % (pixels + 1)
    first = np.searchsorted(row, np.arange(n))
    rank = np.arange(counts.size) - first[row]
    shares = [np.bincount(row, weights=counts * (rank < k), minlength=n) / pixels for k in (1, 10, 100)]
    covered_before = np.cumsum(counts) - counts
    covered_before -= covered_before[first][row]
    needed = np.bincount(row, weights=(100 * covered_before < 99 * pixels), minlength=n)
    return np.stack([*shares, needed], axis=1)


def _check_crops(crops: Any) -> np.ndarray:
    if not isinstance(crops, np.ndarray) or crops.dtype != np.uint8:
        kind = type(crops).__name__ if not isinstance(crops, np.ndarray) else f"array of {crops.dtype}"
        raise ValueError(f"crops must be a uint8 numpy array of shape (N, H, W, 3) RGB; got a {kind}")
    if crops.ndim != 4 or crops.shape[3] != 3:
        raise ValueError(f"crops must have shape (N, H, W, 3) (RGB, channels last); got shape {crops.shape}")
    if min(crops.shape[1:3]) < MIN_SIDE:
        height, width = crops.shape[1:3]
        raise ValueError(f"crops must be at least {MIN_SIDE}x{MIN_SIDE} pixels; got {height}x{width}")
    return crops


def _features_of_chunk(crops: np.ndarray) -> np.ndarray:
    grey = crops.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.concatenate(
        [
            _galbally(grey),
            _specular(crops),
            _crete_blur(grey)[:, None],
            _marziliano_blur(grey)[:, None],
            _moments(crops),
            _colour_diversity(crops),
        ],
        axis=1,
    )


def iqm_features(crops: np.ndarray) -> np.ndarray:
    """Image-quality features of uint8 (N, H, W, 3) RGB crops as float64 (N, len(IQM_FEATURE_NAMES)).

    Each row depends only on its own crop; crops are processed ``CHUNK`` at a time to bound memory. Throughput on
    one core at 64 px is roughly 400-500 crops per CPU-second.
    """
    crops = _check_crops(crops)
    out = np.empty((crops.shape[0], len(IQM_FEATURE_NAMES)), dtype=np.float64)
    for start in range(0, crops.shape[0], CHUNK):
        out[start : start + CHUNK] = _features_of_chunk(np.ascontiguousarray(crops[start : start + CHUNK]))
    return out


def _features_of(crops: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """Features of one crop array, or of an iterable of crop arrays (e.g. shards) one at a time."""
    if isinstance(crops, np.ndarray):
        return iqm_features(crops)
    parts = [iqm_features(chunk) for chunk in crops]
    return np.concatenate(parts, axis=0) if parts else np.empty((0, len(IQM_FEATURE_NAMES)), dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# one-class mixture


def _check_features(features: Any, n_features: int | None = None) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"features must be a 2-D array (samples, features); got shape {array.shape}")
    if n_features is not None and array.shape[1] != n_features:
        raise ValueError(f"features must have {n_features} columns, as the model was fitted on; got {array.shape[1]}")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array).all(axis=1)))
        raise ValueError(f"features must be finite; {bad} of {array.shape[0]} rows hold NaN or inf")
    return array


def _min_samples(components: int, n_features: int) -> int:
    """Live samples needed to fit ``components`` Gaussians: one full covariance needs n_features + 1."""
    return components * (n_features + 1)


class OneClassGMM:
    """A Gaussian mixture over standardised features of live samples; ``score`` is the negative log-likelihood.

    Attributes after ``fit`` (or ``from_json``): ``samples`` (live samples fitted on), ``components``,
    ``covariance`` ("full" or "diag"), ``reg_covar``, ``seed``, ``mean``/``std`` (the live standardisation),
    ``weights``, ``means``, ``precisions_cholesky`` (scikit-learn's parametrisation), ``bic`` (BIC per candidate
    size when the size was chosen by BIC, else None) and ``feature_names`` (None when unnamed).
    """

    def __init__(self) -> None:
        self.samples: int = 0
        self.components: int = 0
        self.covariance: str = "full"
        self.reg_covar: float = REG_COVAR
        self.seed: int = 0
        self.feature_names: tuple[str, ...] | None = None
        self.mean = np.empty(0)
        self.std = np.empty(0)
        self.weights = np.empty(0)
        self.means = np.empty((0, 0))
        self.precisions_cholesky = np.empty(0)
        self.bic: dict[int, float] | None = None

    @property
    def fitted(self) -> bool:
        return self.samples > 0

    def fit(
        self,
        features: np.ndarray,
        components: int | None = None,
        seed: int = 0,
        *,
        covariance: str = "full",
        reg_covar: float = REG_COVAR,
        feature_names: Iterable[str] | None = None,
    ) -> OneClassGMM:
        """Fit on live features (N, F); ``components=None`` picks the size by BIC over ``COMPONENT_CANDIDATES``."""
        if covariance not in ("full", "diag"):
            raise ValueError(f"covariance must be 'full' or 'diag'; got {covariance!r}")
        x = _check_features(features)
        n, n_features = x.shape
        names = None if feature_names is None else tuple(feature_names)
        if names is not None and len(names) != n_features:
            raise ValueError(f"feature_names has {len(names)} names for {n_features} feature columns")
        whole = isinstance(components, (int, np.integer)) and not isinstance(components, bool)
        if components is not None and not (whole and components >= 1):
            raise ValueError(f"components must be a positive integer or None (BIC); got {components!r}")
        needed = _min_samples(1 if components is None else int(components), n_features)
        if n < needed:
            size = "a 1-component" if components is None else f"a {int(components)}-component"
            raise ValueError(
                f"fitting {size} GMM on {n_features} features needs at least {needed} live training samples; got {n}"
            )

        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std = np.where(std > 1e-9 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        z = (x - mean) / std

        def fit_mixture(k: int) -> GaussianMixture:
            return GaussianMixture(
                n_components=k, covariance_type=covariance, reg_covar=reg_covar, max_iter=500, random_state=seed
            ).fit(z)

        if components is None:
            bic, mixture = {}, None
            for k in (k for k in COMPONENT_CANDIDATES if n >= _min_samples(k, n_features)):
                candidate = fit_mixture(k)
                bic[k] = float(candidate.bic(z))
                if mixture is not None and bic[k] >= bic[mixture.n_components]:
                    break  # BIC stopped falling: larger mixtures are not tried
                mixture = candidate
        else:
            bic = None
            mixture = fit_mixture(int(components))

        self.samples, self.components, self.covariance = n, int(mixture.n_components), covariance
        self.reg_covar, self.seed, self.feature_names, self.bic = float(reg_covar), int(seed), names, bic
        self.mean, self.std = mean, std
        self.weights = np.asarray(mixture.weights_, dtype=np.float64)
        self.means = np.asarray(mixture.means_, dtype=np.float64)
        self.precisions_cholesky = np.asarray(mixture.precisions_cholesky_, dtype=np.float64)
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        """Negative log-likelihood per sample (higher = less like the live training data = more likely a spoof)."""
        if not self.fitted:
            raise ValueError("this OneClassGMM is not fitted; call fit() or from_json() first")
        z = (_check_features(features, self.mean.size) - self.mean) / self.std
        return -self._log_likelihood(z)

    def _log_likelihood(self, z: np.ndarray) -> np.ndarray:
        # A stacked (1, F) @ (F, F) product per sample, not one GEMM over the batch, so a sample's value is
        # bit-identical alone or in any batch.
        n, dims = z.shape
        per_component = np.empty((n, self.components))
        for k in range(self.components):
            centred = z - self.means[k]
            chol = self.precisions_cholesky[k]
            if self.covariance == "full":
                white = (centred[:, None, :] @ chol)[:, 0, :]
                log_det = np.sum(np.log(np.diag(chol)))
            else:
                white = centred * chol
                log_det = np.sum(np.log(chol))
            per_component[:, k] = -0.5 * (dims * math.log(2 * math.pi) + (white * white).sum(axis=1)) + log_det
        weighted = per_component + np.log(self.weights)
        peak = weighted.max(axis=1)
        return peak + np.log(np.exp(weighted - peak[:, None]).sum(axis=1))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_json`` rebuilds a model that scores identically."""
        if not self.fitted:
            raise ValueError("this OneClassGMM is not fitted; call fit() before to_json()")
        return {
            "format": _FORMAT,
            "samples": self.samples,
            "components": self.components,
            "covariance": self.covariance,
            "reg_covar": self.reg_covar,
            "seed": self.seed,
            "feature_names": None if self.feature_names is None else list(self.feature_names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "precisions_cholesky": self.precisions_cholesky.tolist(),
            "bic": None if self.bic is None else {str(k): v for k, v in self.bic.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OneClassGMM:
        """The model ``to_json`` described."""
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"not a OneClassGMM description: expected format {_FORMAT!r}, got {found!r}")
        model = cls()
        try:
            model.samples, model.components = int(data["samples"]), int(data["components"])
            model.covariance, model.reg_covar = str(data["covariance"]), float(data["reg_covar"])
            model.seed = int(data["seed"])
            names = data["feature_names"]
            model.feature_names = None if names is None else tuple(str(name) for name in names)
            model.mean = np.asarray(data["mean"], dtype=np.float64)
            model.std = np.asarray(data["std"], dtype=np.float64)
            model.weights = np.asarray(data["weights"], dtype=np.float64)
            model.means = np.asarray(data["means"], dtype=np.float64)
            model.precisions_cholesky = np.asarray(data["precisions_cholesky"], dtype=np.float64)
            bic = data["bic"]
            model.bic = None if bic is None else {int(k): float(v) for k, v in bic.items()}
        except KeyError as missing:
            raise ValueError(f"OneClassGMM description lacks the key {missing}") from None
        dims = model.mean.size
        chol_shape = (model.components, dims, dims) if model.covariance == "full" else (model.components, dims)
        if (
            model.samples < 1
            or model.covariance not in ("full", "diag")
            or model.std.shape != (dims,)
            or model.weights.shape != (model.components,)
            or model.means.shape != (model.components, dims)
            or model.precisions_cholesky.shape != chol_shape
        ):
            raise ValueError(
                f"inconsistent OneClassGMM description: {model.components} components of {dims} features "
                f"({model.covariance} covariance) but weights {model.weights.shape}, means {model.means.shape}, "
                f"precisions_cholesky {model.precisions_cholesky.shape}"
            )
        return model


# ---------------------------------------------------------------------------------------------------------------
# the baseline


def fit_baseline(
    crops: np.ndarray | Iterable[np.ndarray], *, components: int | None = None, seed: int = 0
) -> OneClassGMM:
    """Fit the IQM + one-class GMM baseline on LIVE training crops (uint8 (N, H, W, 3) RGB, or chunks of them)."""
    return OneClassGMM().fit(_features_of(crops), components, seed, feature_names=IQM_FEATURE_NAMES)


def score_baseline(model: OneClassGMM, crops: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """The baseline's score per crop: negative log-likelihood, higher = more likely an attack."""
    if model.feature_names is not None and model.feature_names != IQM_FEATURE_NAMES:
        raise ValueError(
            "the model was fitted on other features than this module's IQM_FEATURE_NAMES; refit it with fit_baseline"
        )
    return model.score(_features_of(crops))
