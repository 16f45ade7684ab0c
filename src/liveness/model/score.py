"""The spoof scores: claim 9's Δ = d(z_bg, z_bg') and the alternatives DESIGN §1.4 asks us to measure.

Every score is a per-sample reduction of one forward pass (the generator has no batch-coupled layer), so a
sample's score never depends on its batch mates. Higher always means "more likely a spoof".

| name | what it computes |
|---|---|
| ``latent_bg`` | the patent's Δ: mean |z_bg - z_bg'| over the K_bg values (claim 9, the named default) |
| ``latent_bg_cos`` | 1 - cosine(z_bg, z_bg'): Δ without the codes' scale |
| ``latent_bg_std`` | Δ with each channel divided by its live-train standard deviation (needs statistics) |
| ``latent_face`` | Δ's comparison on the face codes |
| ``pixel`` | mean |I - I_real|: the reconstruction residual |
| ``pixel_hf`` | mean |high-pass(I - I_real)|: the fine detail the reconstruction does not reproduce |
| ``latent_bg_rel`` | Δ divided by the code's own mean magnitude mean |z_bg|: Δ without the activations' scale |
| ``pixel_topk`` | mean of the largest ``TOPK_FRACTION`` of 8x8-patch residuals: a local artefact in a clean image |
| ``ssim`` | 1 - mean SSIM(I, I_real): structure the reconstruction loses, insensitive to brightness |
| ``gradient`` | mean |∇I - ∇I_real|: edges and texture the model does not rebuild |
| ``spectrum_hf`` | log mean power of the residual above half the Nyquist frequency: halftone and moiré energy |
| ``fused`` | mean of the live z-scores of ``ScoreStatistics.fusion`` (needs statistics) |
| ``deviation`` | root mean square of those z-scores: how atypical of live the sample is, in either direction |
| ``feature_gaussian`` | squared Mahalanobis distance, per feature, of how I differs from I_real
  (``residual_features``: 56 image-quality and colour-consistency measures with the reconstruction as
  reference) from the live Gaussian: a one-class model of the network's residuals on live faces (needs
  statistics) |

``deviation`` is the one-class answer to a measured failure: recaptured attacks are smoother than live faces,
so the network rebuilds them *more* faithfully and the one-sided scores rank them as more live than live
(DESIGN §1.4). A sample whose gaps are unusually small is as atypical of live faces as one whose gaps are large;
no spoof data is needed to say so, only the live-train statistics.

``ScoreStatistics`` holds what the statistics-based scores need. It is fitted on a live split of its own, whose
identities neither trained the generator nor calibrate the threshold (``calibrate.statistics_split``;
``liveness.evaluate.scoring.fit_score_statistics``): on training crops the model has memorised, live residuals
look smaller than they are. It travels with the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from liveness.model.generator import Generator, GeneratorOutput
from liveness.model.score_spec import BASE_SCORES, DEFAULT_FUSION, SCORE_NAMES, STATISTIC_SCORES, ScoreStatistics

# The names and statistics are defined in score_spec (torch-free); they are part of this module's interface too.
__all__ = [
    "BASE_SCORES", "CONSISTENCY_FEATURES", "DEFAULT_FUSION", "FEATURES_PER_REGION", "FEATURE_COUNT", "FEATURE_SCALES",
    "HIGH_PASS_KERNEL", "PATCH", "SCORE_NAMES", "STATISTIC_SCORES", "ScoreStatistics", "TOPK_FRACTION",
    "background_channel_differences", "base_scores", "colour_consistency_features", "cosine_distance_score",
    "feature_gaussian_score",
    "gradient_residual_score", "high_frequency_spectrum_score", "high_pass_residual_score",
    "latent_background_score", "pixel_residual_score", "relative_latent_score", "residual_features",
    "score_components", "score_images", "structural_dissimilarity_score", "topk_patch_residual_score",
]

HIGH_PASS_KERNEL = 5  # box blur side: the residual minus its local mean keeps detail finer than ~5 px
PATCH = 8  # pixel_topk's patch side
TOPK_FRACTION = 0.05
SSIM_WINDOW, SSIM_SIGMA = 7, 1.5
_SSIM_C1, _SSIM_C2 = 0.01**2, 0.03**2  # on [0, 1] images, as Wang et al. 2004
_EPSILON = 1e-8
_FEATURE_FLOOR = 1e-6  # inside the logs of residual_features: a perfect reconstruction stays finite


def latent_background_score(background: torch.Tensor, background_recoded: torch.Tensor) -> torch.Tensor:
    """Δ per sample: the mean absolute difference over the K_bg values of z_bg and z_bg'. Shape (N,)."""
    return (background.float() - background_recoded.float()).abs().flatten(1).mean(dim=1)


def pixel_residual_score(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel residual |I - I_real| per sample, (N,): an alternative to Δ (DESIGN §1.4)."""
    return (image.float() - reconstruction.float()).abs().flatten(1).mean(dim=1)


def high_pass_residual_score(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Mean |r - blur(r)| of the residual r = I - I_real, (N,): texture (halftone, moiré) the model cannot
    rebuild, without the smooth low-frequency error every under-trained reconstruction has."""
    residual = image.float() - reconstruction.float()
    pad = HIGH_PASS_KERNEL // 2
    local_mean = F.avg_pool2d(F.pad(residual, (pad, pad, pad, pad), mode="replicate"), HIGH_PASS_KERNEL, stride=1)
    return (residual - local_mean).abs().flatten(1).mean(dim=1)


def relative_latent_score(background: torch.Tensor, background_recoded: torch.Tensor) -> torch.Tensor:
    """Δ / mean |z_bg| per sample, (N,): the gap as a share of the code's own magnitude, so a recapture that
    shrinks the activations (compressed gamut and contrast) does not shrink its score with them."""
    return latent_background_score(background, background_recoded) / (
        background.float().abs().flatten(1).mean(dim=1) + _EPSILON)


def topk_patch_residual_score(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Mean of the largest ``TOPK_FRACTION`` of 8x8-patch mean residuals (stride 4), (N,): a local artefact
    (a cut edge, glare, a mask border) in an otherwise well rebuilt image."""
    residual = (image.float() - reconstruction.float()).abs().mean(dim=1, keepdim=True)
    patch = min(PATCH, residual.shape[-2], residual.shape[-1])
    patches = F.avg_pool2d(residual, patch, stride=max(1, patch // 2)).flatten(1)
    k = max(1, int(patches.shape[1] * TOPK_FRACTION + 0.5))  # int(), not round(): TorchScript traces shapes as tensors
    return patches.topk(k, dim=1).values.mean(dim=1)


def _gaussian_window(channels: int, device: torch.device) -> torch.Tensor:
    coordinates = torch.arange(SSIM_WINDOW, dtype=torch.float32, device=device) - (SSIM_WINDOW - 1) / 2
    line = torch.exp(-coordinates.square() / (2 * SSIM_SIGMA**2))
    line = line / line.sum()
    return (line[:, None] * line[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def structural_dissimilarity_score(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """1 - mean SSIM (Gaussian window, per channel, edges replicated) of I and I_real on [0, 1], (N,)."""
    return 1.0 - _ssim_map(image, reconstruction).flatten(1).mean(dim=1)


def _ssim_map(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """The SSIM map (N, C, H, W) of two images in [-1, 1], compared on [0, 1]."""
    x, y = (image.float() + 1) / 2, (reconstruction.float() + 1) / 2
    window = _gaussian_window(x.shape[1], x.device)
    pad = SSIM_WINDOW // 2

    def blur(values: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(values, (pad, pad, pad, pad), mode="replicate"), window, groups=x.shape[1])

    mean_x, mean_y = blur(x), blur(y)
    var_x = blur(x * x) - mean_x.square()
    var_y = blur(y * y) - mean_y.square()
    covariance = blur(x * y) - mean_x * mean_y
    return ((2 * mean_x * mean_y + _SSIM_C1) * (2 * covariance + _SSIM_C2)) / (
        (mean_x.square() + mean_y.square() + _SSIM_C1) * (var_x + var_y + _SSIM_C2))


def _gradients(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return values[..., :, 1:] - values[..., :, :-1], values[..., 1:, :] - values[..., :-1, :]


def gradient_residual_score(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Mean |∂I - ∂I_real| over both directions, (N,): the edges and texture the reconstruction misses."""
    image_dx, image_dy = _gradients(image.float())
    recon_dx, recon_dy = _gradients(reconstruction.float())
    return ((image_dx - recon_dx).abs().flatten(1).mean(dim=1) + (image_dy - recon_dy).abs().flatten(1).mean(dim=1)) / 2


def _dft_basis(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary DFT matrices: the spectrum as two matmuls, which every ONNX exporter traces."""
    index = torch.arange(size, dtype=torch.float32, device=device)
    angle = 2 * torch.pi * index[:, None] * index[None, :] / size
    return torch.cos(angle), -torch.sin(angle)


def high_frequency_spectrum_score(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """log mean power of the grey residual's 2-D DFT above half the Nyquist radius, (N,): the periodic energy
    of halftone dots, screen grids and moiré, which a model of live faces does not rebuild."""
    residual = (image.float() - reconstruction.float()).mean(dim=1)  # (N, H, W)
    height, width = residual.shape[-2:]
    cos_h, sin_h = _dft_basis(height, residual.device)
    cos_w, sin_w = _dft_basis(width, residual.device)
    rows_real, rows_imag = cos_h @ residual, sin_h @ residual
    real = rows_real @ cos_w - rows_imag @ sin_w
    imaginary = rows_real @ sin_w + rows_imag @ cos_w
    power = (real.square() + imaginary.square()) / (height * width)
    fy = torch.minimum(torch.arange(height, device=residual.device), height - torch.arange(height, device=residual.device))
    fx = torch.minimum(torch.arange(width, device=residual.device), width - torch.arange(width, device=residual.device))
    radius = torch.sqrt((fy[:, None] / (height / 2)).square() + (fx[None, :] / (width / 2)).square())
    band = (radius > 0.5).to(power.dtype)
    return torch.log((power * band).flatten(1).sum(dim=1) / band.sum() + _EPSILON)


def cosine_distance_score(codes: torch.Tensor, recodes: torch.Tensor) -> torch.Tensor:
    """1 - cos(z, z') over the flattened codes, (N,)."""
    return 1.0 - F.cosine_similarity(codes.float().flatten(1), recodes.float().flatten(1), dim=1, eps=_EPSILON)


def background_channel_differences(output: GeneratorOutput) -> torch.Tensor:
    """Mean |z_bg - z_bg'| per sample and channel, (N, C): Δ is its mean over C."""
    return (output.codes.background.float() - output.recodes.background.float()).abs().flatten(2).mean(dim=2)


_BASE_SCORE_FUNCTIONS: dict[str, Callable[[torch.Tensor, GeneratorOutput], torch.Tensor]] = {
    "latent_bg": lambda image, out: latent_background_score(out.codes.background, out.recodes.background),
    "latent_bg_cos": lambda image, out: cosine_distance_score(out.codes.background, out.recodes.background),
    "latent_face": lambda image, out: latent_background_score(out.codes.face, out.recodes.face),
    "pixel": lambda image, out: pixel_residual_score(image, out.reconstruction),
    "pixel_hf": lambda image, out: high_pass_residual_score(image, out.reconstruction),
    "latent_bg_rel": lambda image, out: relative_latent_score(out.codes.background, out.recodes.background),
    "pixel_topk": lambda image, out: topk_patch_residual_score(image, out.reconstruction),
    "ssim": lambda image, out: structural_dissimilarity_score(image, out.reconstruction),
    "gradient": lambda image, out: gradient_residual_score(image, out.reconstruction),
    "spectrum_hf": lambda image, out: high_frequency_spectrum_score(image, out.reconstruction),
}


def base_scores(image: torch.Tensor, output: GeneratorOutput,
                names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """``BASE_SCORES`` of one forward pass (or only ``names`` of them), each (N,): no statistics needed."""
    wanted = _BASE_SCORE_FUNCTIONS if names is None else names
    return {name: _BASE_SCORE_FUNCTIONS[name](image, output) for name in wanted}


_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))
FEATURE_SCALES = (1, 2)  # full resolution, then 2x2-averaged
FEATURES_PER_REGION = 11
# Face parts of the aligned crop (curate.crop.context 2: the face spans the central half), as (top, bottom, left,
# right) fractions of the crop side: each is compared with the forehead just above the brows.
FOREHEAD = (0.22, 0.30, 0.40, 0.60)
FACE_PARTS = {"cheeks": (0.47, 0.63, 0.34, 0.66), "nose": (0.41, 0.56, 0.44, 0.56), "chin": (0.66, 0.73, 0.41, 0.59)}
COLOUR_STATISTICS = 4  # luminance, red-green, yellow-blue, saturation
CONSISTENCY_FEATURES = len(FACE_PARTS) * COLOUR_STATISTICS  # 12
FEATURE_COUNT = len(FEATURE_SCALES) * 2 * FEATURES_PER_REGION + CONSISTENCY_FEATURES  # 56


def _per_region_mean(values: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean of (N, C, H, W) ``values`` over the pixels where ``region`` (1, 1, H, W) is 1, per channel: (N, C)."""
    return (values * region).flatten(2).sum(dim=2) / region.sum()


def residual_features(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """What ``feature_gaussian`` models: how I differs from the network's I_real, per sample (N, 56).

    The reconstruction is the network's learned "live" version of the input, so these are image-quality
    measures with I_real as the reference. At two scales and in two regions of the aligned crop, the face
    (its central half) and the surround (background, hair, edges), 11 values: log mean |r|, log mean |r minus
    its local mean| (fine residual), log mean SSIM dissimilarity, log mean gradient error, the log ratio of I's
    to I_real's Laplacian energy (sharpness the model does not rebuild), and per colour channel the mean and
    log RMS of r (a cast or gamut change). Measured (SYNTHETIC, issue 10): the surround carries most of it for
    prints and replays (paper and bezel edges, moiré), the face region for worn masks; the latent codes'
    own statistics only added noise (worst-species AUC 0.59 against 0.90 for the residual measures). The last
    12 are ``colour_consistency_features``.
    """
    features = []
    x, y = image.float(), reconstruction.float()
    channels = x.shape[1]
    laplacian = torch.tensor(_LAPLACIAN, dtype=torch.float32, device=x.device).expand(channels, 1, 3, 3)
    for scale in FEATURE_SCALES:
        if scale > 1:
            x, y = F.avg_pool2d(x, scale), F.avg_pool2d(y, scale)
        height, width = x.shape[-2:]
        face = torch.zeros(1, 1, height, width, device=x.device)
        face[..., height // 4 : height - height // 4, width // 4 : width - width // 4] = 1.0
        residual = x - y
        pad = HIGH_PASS_KERNEL // 2
        fine = residual - F.avg_pool2d(F.pad(residual, (pad, pad, pad, pad), mode="replicate"), HIGH_PASS_KERNEL,
                                       stride=1)
        dissimilarity = 1.0 - _ssim_map(x, y)
        dx = F.pad((x[..., :, 1:] - x[..., :, :-1]) - (y[..., :, 1:] - y[..., :, :-1]), (0, 1, 0, 0))
        dy = F.pad((x[..., 1:, :] - x[..., :-1, :]) - (y[..., 1:, :] - y[..., :-1, :]), (0, 0, 0, 1))
        sharp_x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), laplacian, groups=channels).abs()
        sharp_y = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), laplacian, groups=channels).abs()
        for region in (face, 1.0 - face):
            def mean(values: torch.Tensor) -> torch.Tensor:
                return _per_region_mean(values, region)

            features += [
                torch.log(mean(residual.abs()).mean(dim=1) + _FEATURE_FLOOR),
                torch.log(mean(fine.abs()).mean(dim=1) + _FEATURE_FLOOR),
                torch.log(mean(dissimilarity).mean(dim=1) + _FEATURE_FLOOR),
                torch.log(mean((dx.abs() + dy.abs()) / 2).mean(dim=1) + _FEATURE_FLOOR),
                torch.log(mean(sharp_x).mean(dim=1) + _FEATURE_FLOOR) - torch.log(mean(sharp_y).mean(dim=1) + _FEATURE_FLOOR),
                *mean(residual).unbind(dim=1),
                *torch.log(mean(residual.square()).sqrt() + _FEATURE_FLOOR).unbind(dim=1),
            ]
    features.extend(colour_consistency_features(image, reconstruction).unbind(dim=1))
    return torch.stack(features, dim=1)


def _region_colour(image: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """(N, 4) colour statistics of the crop region ``box`` (fractions of the side) of (N, 3, H, W) RGB in [-1, 1],
    taken to [0, 1]: mean luminance, mean red-green and yellow-blue opponents, and mean saturation (HSV's)."""
    height, width = image.shape[-2:]
    top, bottom, left, right = box
    region = image[..., round(top * height) : max(round(bottom * height), round(top * height) + 1),
                   round(left * width) : max(round(right * width), round(left * width) + 1)].float()
    region = (region.clamp(-1, 1) + 1) / 2
    red, green, blue = region.unbind(dim=1)
    luminance = (red + green + blue) / 3
    brightest = region.amax(dim=1)
    saturation = (brightest - region.amin(dim=1)) / brightest.clamp_min(1.0 / 255)  # HSV's: ink lowers it
    return torch.stack([luminance.mean(dim=(1, 2)), (red - green).mean(dim=(1, 2)),
                        ((red + green) / 2 - blue).mean(dim=(1, 2)), saturation.mean(dim=(1, 2))], dim=1)


def colour_consistency_features(image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """How the input's face parts differ in colour from its forehead, beyond what the network's I_real shows, (N, 12).

    A live face has one skin: the network, trained on live faces only, rebuilds cheeks, nose and chin in the
    forehead's colour. A worn print (mask_face) puts ink on paper over the face interior only: less saturated,
    lifted blacks, another exposure, while the forehead above the cut stays live skin. Per face part, the
    feature is (part - forehead) of I minus the same of I_real, for each of ``_region_colour``'s statistics.
    Measured (SYNTHETIC, the efficacy benchmark's model, calibration split): with these 12 the Gaussian reaches
    mask_face AUC 0.71, against 0.61 with the other 44 alone, and prints and replays keep 0.99 (the luminance
    spread of each part, tried too, cost prints 0.002 and added nothing).
    """
    def contrasts(picture: torch.Tensor) -> torch.Tensor:
        forehead = _region_colour(picture, FOREHEAD)
        return torch.cat([_region_colour(picture, box) - forehead for box in FACE_PARTS.values()], dim=1)

    return contrasts(image) - contrasts(reconstruction)


def score_components(image: torch.Tensor, output: GeneratorOutput, statistics: ScoreStatistics | None = None,
                     only: str | None = None) -> dict[str, torch.Tensor]:
    """Every per-sample score of one forward pass, each (N,). Without ``statistics`` only ``BASE_SCORES``;
    with them, each statistics score they support. ``only``: just that score (serving needs one; the others
    cost as much as a small network's forward pass), plus what it is computed from."""
    inputs = {only} | (set(statistics.fusion) if statistics is not None and only in ("fused", "deviation") else set())

    def wanted(*names: str) -> bool:
        return only is None or bool(inputs & set(names))

    scores = base_scores(image, output, None if only is None else [n for n in _BASE_SCORE_FUNCTIONS if n in inputs])
    if statistics is None:
        return scores
    if wanted("latent_bg_std") and statistics.supports("latent_bg_std"):
        channel_differences = background_channel_differences(output)
        std = torch.tensor(statistics.background_std, dtype=torch.float32, device=channel_differences.device)
        scores["latent_bg_std"] = (channel_differences / std.clamp_min(_EPSILON)).mean(dim=1)
    if wanted("fused", "deviation") and statistics.supports("fused"):
        standardised = [(scores[name] - statistics.score_mean[name]) / max(statistics.score_std[name], _EPSILON)
                        for name in statistics.fusion]
        stacked = torch.stack(standardised, dim=1)
        scores["fused"] = stacked.mean(dim=1)
        scores["deviation"] = stacked.square().mean(dim=1).sqrt()
    if wanted("feature_gaussian") and statistics.supports("feature_gaussian"):
        scores["feature_gaussian"] = feature_gaussian_score(residual_features(image, output.reconstruction), statistics)
    return scores


def feature_gaussian_score(features: torch.Tensor, statistics: ScoreStatistics) -> torch.Tensor:
    """(x - μ)ᵀ P (x - μ) / D on the scaled features, (N,): large when the network sees what live faces never show."""
    device = features.device
    mean = torch.tensor(statistics.feature_mean, dtype=torch.float32, device=device)
    features = features[:, : mean.shape[0]]  # a bundle fitted before colour_consistency_features has 44
    scale = torch.tensor(statistics.feature_scale, dtype=torch.float32, device=device)
    precision = torch.tensor(statistics.feature_precision, dtype=torch.float32, device=device)
    centred = (features.float() - mean) / scale
    return (centred @ precision * centred).sum(dim=1) / centred.shape[1]


@torch.no_grad()
def score_images(generator: Generator, images: torch.Tensor) -> torch.Tensor:
    """Δ for a batch of images in [-1, 1]; higher means more likely a spoof.

    The generator has no batch-coupled layers and the score is a per-sample reduction, so a sample's score
    is the same alone or in any batch (up to float rounding).
    """
    was_training = generator.training
    generator.eval()
    try:
        output = generator(images, with_clear_face=False)
    finally:
        generator.train(was_training)
    return latent_background_score(output.codes.background, output.recodes.background)
