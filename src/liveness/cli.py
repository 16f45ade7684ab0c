"""The ``liveness`` command line: one entry point for every stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
import yaml
from rich.console import Console

from liveness.config import DEFAULT_MAX_PIXELS, ConfigError, load_params
from liveness.data.sources.common import FOLDER_IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, looks_like_image
from liveness.registry.resolve import DEFAULT_MODEL

app = typer.Typer(
    help="One-class silent face liveness: train on live faces only, score spoofs by latent inconsistency.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
identity_app = typer.Typer(help="The frozen identity network f (VGGFace2 InceptionResnetV1, or dlib's face ResNet).",
                           no_args_is_help=True)
app.add_typer(identity_app, name="identity")
export_app = typer.Typer(help="Deployable forms of a model (ONNX).", no_args_is_help=True)
app.add_typer(export_app, name="export")
console = Console(stderr=True, soft_wrap=True)
# Under torchrun only rank 0 talks; the other ranks' consoles stay quiet.
quiet_console = Console(stderr=True, quiet=True)


def _rank_console() -> Console:
    return console if int(os.environ.get("RANK", "0")) == 0 else quiet_console


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _parse_overrides(pairs: list[str]) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            _fail(f"--set expects KEY=VALUE (for example train.epochs=2), got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


@app.command()
def train(
    params_path: Annotated[Path, typer.Option("--params", help="params.yaml to read (sections base, model, identity, loss, train).")] = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Output folder: checkpoints/, metrics.jsonl, generator.pt, summary.json.")] = Path("runs/train"),
    data: Annotated[Optional[str], typer.Option(help="Curated folder (manifest.parquet + shards/; default train.data), 'smoke' for built-in synthetic smoke crops, or a .npy of uint8 (N, H, W, 3) crops.")] = None,
    smoke_count: Annotated[int, typer.Option(help="How many smoke crops to generate when --data smoke.")] = 256,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a param, e.g. --set train.epochs=2 (repeatable).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoints/last.pt when it exists.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar with losses and img/s.")] = True,
) -> None:
    """Train G and D on live crops (alternating D/G steps, Adam, cosine annealing).

    Runs on CUDA with bf16 when present, else on CPU in fp32. For several GPUs launch it with
    `torchrun --nproc_per_node N -m liveness train ...`; train.batch_size is the global batch.
    Ctrl-C writes a checkpoint of the last whole step; run the same command again to resume.
    """
    from liveness.train.stage import training_dataset, validation_crops
    from liveness.model.identity import IdentityWeightsError
    from liveness.train.checkpoint import CheckpointError
    from liveness.train.trainer import Trainer, TrainingDataError, TrainingInterrupted

    say = _rank_console()
    try:
        params = load_params(params_path, _parse_overrides(overrides or []))
        dataset, description = training_dataset(params, data, smoke_count)
        validation, held_out = validation_crops(params, data)
        say.print(f"data: {description}; reconstruction quality on {held_out}")
        trainer = Trainer(params, out, progress=progress)
        if trainer.identity is not None and trainer.identity.stand_in:
            say.print("identity: onet, an offline STAND-IN for the identity network (not identity features)")
        elif trainer.identity is None:
            say.print("identity: none, the identity loss L_id is dropped for this run")
        result = trainer.fit(dataset, resume=resume, validation=validation)
    except TrainingInterrupted as stop:
        _fail(str(stop), code=130)
    except (ConfigError, IdentityWeightsError, CheckpointError, TrainingDataError, FileNotFoundError, ValueError) as error:
        _fail(str(error))
    losses = " ".join(f"{name}={value:.4f}" for name, value in result.final_losses.items())
    say.print(f"done: {result.epochs} epochs, {result.steps} steps in {result.seconds:.1f}s. {losses}")
    if result.reconstruction:
        say.print(f"held-out reconstruction: PSNR {result.reconstruction['psnr_db']:.2f} dB, "
                  f"SSIM {result.reconstruction['ssim']:.3f}")
    say.print(f"outputs: {out}/generator.pt, {out}/summary.json, {out}/metrics.jsonl, {out}/checkpoints/last.pt")


@app.command("demo-data")
def demo_data(
    params_path: Annotated[Path, typer.Option("--params", help="params.yaml whose demo section sizes the set.")] = Path("params.yaml"),
    out: Annotated[Optional[Path], typer.Option(help="Output folder; default demo.out_dir from params.")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a param, e.g. --set demo.identities_live=200.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Generate the SYNTHETIC demo dataset: procedural faces (CelebA layout) and simulated print, screen-replay
    and cut-photo attacks (CelebA-Spoof layout). Deterministic from base.seed; reruns with the same params do
    nothing."""
    from liveness.data.stage import generate_demo

    try:
        params = load_params(params_path, _parse_overrides(overrides or []))
    except ConfigError as error:
        _fail(str(error))
    destination = out or params.demo.out_dir
    summary = generate_demo(params, destination, progress)
    console.print(f"SYNTHETIC demo data in {destination}: {summary}")


@identity_app.command("fetch")
def identity_fetch(
    dest: Annotated[Optional[Path], typer.Option(help="Where to write the weights; default: facenet-pytorch's torch cache path.")] = None,
    url: Annotated[Optional[str], typer.Option(help="Source URL (file:// works for a local copy).")] = None,
) -> None:
    """Download the VGGFace2 InceptionResnetV1 weights (needs internet), check they load, and put them in place."""
    from liveness.model.identity import VGGFACE2_URL, IdentityWeightsError, fetch_vggface2_weights

    try:
        path = fetch_vggface2_weights(dest, url or VGGFACE2_URL)
    except IdentityWeightsError as error:
        _fail(str(error))
    except OSError as error:
        _fail(f"could not download {url or VGGFACE2_URL}: {error}. Without internet, copy the file by hand.")
    console.print(f"VGGFace2 weights ready at {path}")


@identity_app.command("check")
def identity_check(
    params_path: Annotated[Path, typer.Option("--params", help="params.yaml whose identity section to check.")] = Path("params.yaml"),
) -> None:
    """Load the identity network the params select and report what it is."""
    from liveness.model.identity import IdentityWeightsError, build_identity_network

    try:
        params = load_params(params_path)
        network = build_identity_network(params.identity.backbone, params.identity.weights, params.curate.crop.context)
    except (ConfigError, IdentityWeightsError) as error:
        _fail(str(error))
    if network is None:
        console.print("identity.backbone: none (the identity loss is dropped)")
    else:
        real = "identity embedding (a real, pretrained face-recognition network)"
        kind = "offline stand-in, not identity" if network.stand_in else real
        weights = f", weights {network.weights}" if network.weights is not None else ""
        console.print(f"identity.backbone: {network.name}, {network.embedding_dim}-d {kind}, "
                      f"input {network.input_size} px{weights}")


IMAGE_SUFFIXES = FOLDER_IMAGE_EXTENSIONS
VIDEO_SUFFIXES = VIDEO_EXTENSIONS


def _registry_settings(params_path: Path):
    """params.yaml's register section (defaults when the file is absent), with MLflow pointed at its store."""
    import mlflow

    from liveness.config import RegisterParams
    from liveness.mlflow_store import tracking_uri

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        settings = load_params(params_path).register if params_path.is_file() else RegisterParams()
    except ConfigError as error:
        _fail(str(error))
    mlflow.set_tracking_uri(tracking_uri(settings.tracking_uri))
    return settings


@app.command()
def ablate(
    params_path: Annotated[Path, typer.Option("--params", help="Base params.yaml; each ablation overrides a few keys of it.")] = Path("params.yaml"),
    rows: Annotated[str, typer.Option(help="Comma-separated ablation names (see liveness.evaluate.ablation.ABLATIONS), or 'all'.")] = "baseline,latent_stop_gradient,latent_relative",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; every row runs once per seed.")] = "0,1,2",
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs of the baseline (default train.epochs); half/double_training scale it.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for each run and ablations.json / ablations.md.")] = Path("reports/ablations"),
    bootstrap_resamples: Annotated[int, typer.Option(help="Bootstrap resamples of each run's test CIs (small: the table uses AUCs).")] = 50,
) -> None:
    """Train and calibrate each ablation row for each seed on the curated data; every run is an MLflow run.

    Prints and writes the table: per score, the worst attack species' AUC on the calibration split (mean ± std
    over seeds), and the test AUC per species of the score each run shipped. Needs `dvc repro curate
    prepare_spoof` (or the whole pipeline) first.
    """
    from liveness.evaluate.ablation import ABLATIONS, run_ablations

    names = list(ABLATIONS) if rows == "all" else [name.strip() for name in rows.split(",") if name.strip()]
    try:
        seed_list = [int(seed) for seed in seeds.split(",") if seed.strip()]
    except ValueError:
        _fail(f"--seeds expects comma-separated integers, got {seeds!r}")
    unknown = [name for name in names if name not in ABLATIONS]
    if unknown or not names:
        _fail(f"unknown ablations {unknown or names}; choose from {', '.join(ABLATIONS)} or 'all'")
    try:
        run_ablations(params_path, names, seed_list, out, epochs, bootstrap_resamples,
                      on_run=lambda r: console.print(f"{r.row} seed {r.seed}: shipped {r.shipped_score}, test AUC "
                                                     + ", ".join(f"{k} {v:.3f}" for k, v in r.test_per_species.items())))
    except (ConfigError, FileNotFoundError, ValueError) as error:
        _fail(str(error))
    typer.echo((out / "ablations.md").read_text())


@app.command()
def promote(
    name: Annotated[Optional[str], typer.Option(help="Registered model name; default register.model_name.")] = None,
    gate: Annotated[str, typer.Option(help="Rules challenger-vs-champion on test metrics: METRIC<= (lower is better) or METRIC>=, comma-separated.")] = "bpcer100<=,auc>=",
    params_path: Annotated[Path, typer.Option("--params", help="params.yaml whose register section names the model and tracking store.")] = Path("params.yaml"),
) -> None:
    """Move @champion to @challenger if the gate passes (the first challenger becomes champion). Exit 1 on refusal."""
    from mlflow import MlflowClient
    from rich.table import Table

    from liveness.registry.promote import promote as run_promotion

    settings = _registry_settings(params_path)
    model = name or settings.model_name
    try:
        decision = run_promotion(MlflowClient(), model, gate)
    except ValueError as error:
        _fail(str(error))
    table = Table(title=f"{model}: challenger v{decision.challenger} vs champion v{decision.champion_before or '-'}")
    for column in ("metric", "rule", "challenger", "champion", "pass"):
        table.add_column(column)
    for row in decision.comparisons:
        table.add_row(row.rule.metric, f"challenger {row.rule.op} champion", f"{row.challenger:.6g}",
                      "-" if decision.champion_before is None else f"{row.champion:.6g}",
                      "[green]yes[/]" if row.passed else "[red]no[/]")
    if decision.comparisons:
        console.print(table)
    if not decision.promoted:
        _fail(f"promotion refused: {decision.reason}", code=1)
    console.print(f"[bold green]promoted[/] {model} v{decision.challenger} to @champion ({decision.reason})")


def _predict_inputs(paths: list[Path], frames: int) -> list[tuple[str, int | None, bytes | None, str]]:
    """(path, frame, encoded image or None, failure reason) per image file or sampled video frame."""
    import cv2

    from liveness.data.video import VideoError, sample_frames

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            # Known suffixes, and files whose first bytes look like an image whatever they are named.
            found = sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink())
            chosen = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES or looks_like_image(p)]
            if len(chosen) < len(found):
                console.print(f"[yellow]note:[/] skipped {len(found) - len(chosen)} file(s) under {path} that are "
                              "neither images nor videos by name or content")
            files += chosen
        else:
            files.append(path)
    items: list[tuple[str, int | None, bytes | None, str]] = []
    for path in files:
        if not path.exists():
            items.append((str(path), None, None, "broken_symlink" if path.is_symlink() else "missing_file"))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            try:
                for index, rgb in sample_frames(path, frames):
                    items.append((str(path), index, cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes(), ""))
            except VideoError as error:
                items.append((str(path), None, None, error.reason))
        else:
            try:
                items.append((str(path), None, path.read_bytes(), ""))
            except FileNotFoundError:
                items.append((str(path), None, None, "broken_symlink" if path.is_symlink() else "missing_file"))
            except OSError:
                items.append((str(path), None, None, "unreadable"))
    return items



def _json_value(value: object) -> object:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and value != value:
        return None
    return value


def _model_bundle(model: str, params_path: Path, workdir: Path) -> Path:
    """The bundle folder (config.json + weights) of a local bundle, a local pyfunc model folder or a models:/ URI
    (downloaded under ``workdir``)."""
    from liveness.registry.resolve import bundle_folder

    local = Path(model)
    if not local.is_dir():
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        _registry_settings(params_path)
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model, dst_path=str(workdir)))
        except (MlflowException, OSError) as error:
            _fail(f"cannot load model {model}: {error}. Register one (`python -m pipeline.register`, "
                  "`liveness promote`) or pass --model")
    try:
        return bundle_folder(local)
    except FileNotFoundError as error:
        _fail(str(error))


def _default_export_dir(model: str) -> Path:
    """models:/liveness@champion -> runs/export/liveness@champion."""
    return Path("runs/export") / model.removeprefix("models:/").strip("/").replace("/", "-")


@export_app.command("onnx")
def export_onnx(
    model: Annotated[str, typer.Option(help="models:/<name>@<alias>, models:/<name>/<version>, a model bundle folder (config.json + generator.pt) or a local pyfunc model folder.")] = DEFAULT_MODEL,
    out: Annotated[Optional[Path], typer.Option(help="Folder to write model.onnx into (config.json is copied beside it). Default: the bundle folder itself for a local bundle, else runs/export/<name>@<alias>.")] = None,
    opset: Annotated[int, typer.Option(min=17, help="ONNX opset. 18 and up use the dynamo exporter (TorchScript exporter as fallback); 17 uses the TorchScript exporter.")] = 18,
    params_path: Annotated[Path, typer.Option("--params", help="params.yaml whose register section names the tracking store.")] = Path("params.yaml"),
) -> None:
    """Export the scoring graph (E1, decoders, recombination, E2, then the score) to ONNX with a dynamic batch.

    The threshold, score, crop/detection settings and preprocessing go into the file's metadata. The export is
    checked against torch (max |onnx - torch| <= 1e-4) before it is written. Then: `liveness predict --backend
    onnx --model OUT ...`.
    """
    import tempfile

    from liveness.export.onnx import OnnxExportError, export_bundle

    with tempfile.TemporaryDirectory(prefix="liveness-export-") as workdir:
        bundle = _model_bundle(model, params_path, Path(workdir))
        local_bundle = Path(model).is_dir() and bundle == Path(model)
        destination = out or (bundle if local_bundle else _default_export_dir(model))
        try:
            result = export_bundle(bundle, destination, opset)
        except (OnnxExportError, FileNotFoundError, ValueError) as error:
            _fail(str(error))
    meta = {prop.key: prop.value for prop in result.model.metadata_props}
    console.print(f"wrote {result.path} (opset {opset}, {result.exporter} exporter, score {meta['score']!r}, "
                  f"threshold {float(meta['threshold']):.6g}, max |onnx - torch| = {result.max_abs_diff:.2g})")


@app.command()
def predict(
    paths: Annotated[list[Path], typer.Argument(help="Images, folders (searched recursively) and videos.")],
    model: Annotated[str, typer.Option(help="models:/<name>@<alias>, models:/<name>/<version>, a local pyfunc model folder or a model bundle folder (config.json + generator.pt); with --backend onnx, a folder holding model.onnx (`liveness export onnx`).")] = DEFAULT_MODEL,
    frames: Annotated[int, typer.Option(min=1, help="Frames sampled evenly from each video.")] = 5,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model call.")] = 16,
    params_path: Annotated[Path, typer.Option("--params", help="params.yaml whose register section names the tracking store.")] = Path("params.yaml"),
    backend: Annotated[Literal["torch", "onnx"], typer.Option(help="torch: the MLflow pyfunc model (a bundle folder is scored directly); onnx: onnxruntime on the exported model.onnx.")] = "torch",
) -> None:
    """Score images and videos with a registered model; one JSON line per image or frame on stdout.

    Each row carries trained_on ("synthetic" or "real") and model {name, version, uri}; a model trained on
    synthetic data that scores an image also prints one warning on stderr. Exits 1 when any input failed
    (unreadable, rejected by the decoder, several faces), naming its reason.
    """
    import json

    from rich.markup import escape

    from liveness.bundle import synthetic_warning

    info, trained_on, score = _predict_model(model, params_path, backend)
    items = _predict_inputs(paths, frames)
    if not items:
        _fail(f"no image or video found under {', '.join(map(str, paths))}")
    failures, warned = 0, False
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        readable = [item for item in chunk if item[2] is not None]
        outputs = iter(_isolated(score, [item[2] for item in readable]) if readable else [])
        for path, frame, data, reason in chunk:
            row = next(outputs) if data is not None else _rejected_row(reason)
            row = {"path": path, "frame": frame, **{key: _json_value(value) for key, value in row.items()},
                   "trained_on": trained_on, "model": info}
            if trained_on == "synthetic" and row["score"] is not None and not warned:
                console.print(f"[bold yellow]warning:[/] {escape(synthetic_warning(info['name'], info['version']))}",
                              highlight=False)
                warned = True
            print(json.dumps(row), flush=True)
            if row["label"] == "rejected":
                failures += 1
                console.print(f"[red]failed:[/] {path}{'' if frame is None else f' frame {frame}'}: {row['reason']}")
    if failures:
        _fail(f"{failures} of {len(items)} inputs failed", code=1)


def _rejected_row(reason: str) -> dict:
    return {"face_found": False, "box": None, "score": None, "threshold": None, "label": "rejected",
            "reason": reason, "converted": ""}


def _isolated(score, images: list[bytes]) -> list[dict]:
    """Rows for ``images``; when the model call fails, each image is retried alone so only the culprit fails."""
    try:
        return score(images)
    except Exception:  # noqa: BLE001 - one image must never cost the others their rows
        if len(images) == 1:
            return [_rejected_row("processing_failed")]
    return [_isolated(score, [image])[0] for image in images]


def _predict_model(model: str, params_path: Path, backend: str):
    """(model {name, version, uri}, trained_on, images -> rows) for ``liveness predict``.

    The name and version come from the same source ``liveness serve`` uses (``registry.resolve``): the registry
    name and the version an alias points at now (that version is then loaded), or a folder's name and "local".
    """
    import tempfile

    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from liveness.bundle import Predictor
    from liveness.registry.resolve import RegistrySource, bundle_folder, open_source, parse_model_uri
    from liveness.mlflow_store import tracking_uri

    def cannot_load(error: Exception) -> None:
        _fail(f"cannot load model {model}: {error}. Register one (`python -m pipeline.register`, "
              "`liveness promote`) or pass --model")

    try:
        remote = parse_model_uri(model) is not None
    except ValueError as error:
        _fail(str(error))
    store = tracking_uri(_registry_settings(params_path).tracking_uri) if remote else None
    try:
        source = open_source(model, store)
        revision = source.revision()
    except FileNotFoundError as error:
        _fail(str(error))
    except (MlflowException, OSError) as error:
        cannot_load(error)
    info = {"name": source.name, "version": source.version(revision), "uri": source.uri}
    if backend == "onnx":
        with tempfile.TemporaryDirectory(prefix="liveness-predict-") as workdir:
            try:
                bundle = source.fetch(revision, Path(workdir))
            except (MlflowException, OSError) as error:
                cannot_load(error)
            try:
                predictor = Predictor(bundle, backend="onnx")
            except FileNotFoundError as error:
                _fail(str(error) if not remote else
                      f"{model} has no model.onnx (the registry holds the torch bundle): run `liveness export onnx "
                      f"--model {model}`, then pass --model {_default_export_dir(model)}")
            except ValueError as error:
                _fail(str(error))
        return info, predictor.trained_on, lambda images: [p.as_dict() for p in predictor.predict(images)]
    local = Path(model)
    if not remote and bundle_folder(local) == local:  # a bundle folder: score it directly, as serve does
        try:
            predictor = Predictor(local)
        except (FileNotFoundError, ValueError) as error:
            _fail(str(error))
        return info, predictor.trained_on, lambda images: [p.as_dict() for p in predictor.predict(images)]
    pinned = f"models:/{source.name}/{revision}" if isinstance(source, RegistrySource) else model
    try:
        loaded = mlflow.pyfunc.load_model(pinned)
    except (MlflowException, OSError) as error:
        cannot_load(error)
    try:  # the bundle config, not the output columns: a model registered before trained_on existed lacks them
        trained_on = loaded.unwrap_python_model()._predictor.config.data
    except AttributeError:
        _fail(f"{model} is not a liveness model (its pyfunc model has no liveness predictor)")
    return info, trained_on, lambda images: loaded.predict(pd.DataFrame({"image": images})).to_dict("records")


@app.command()
def serve(
    model: Annotated[str, typer.Option(help="models:/<name>@<alias>, models:/<name>/<version>, a model bundle folder or a pyfunc model folder.")] = DEFAULT_MODEL,
    host: Annotated[str, typer.Option(help="Interface to bind. Loopback (127.0.0.0/8, ::1, localhost) needs no key; any other address needs --api-key-file (or $LIVENESS_API_KEY), or --insecure.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    max_bytes: Annotated[int, typer.Option(min=1, help="Largest encoded image accepted, in bytes (413 above).")] = 10 * 1024 * 1024,
    max_pixels: Annotated[int, typer.Option(min=1, help="Largest width x height accepted, read from the image header before decoding (413 above).")] = DEFAULT_MAX_PIXELS,
    max_batch: Annotated[int, typer.Option(min=1, help="Most images in one /v1/liveness/batch request (413 above).")] = 16,
    timeout_s: Annotated[float, typer.Option(min=0.001, help="Seconds allowed for receiving a body (408) and, separately, for queueing, decoding and scoring it (503).")] = 30.0,
    poll_s: Annotated[float, typer.Option(min=0, help="Seconds between checks whether the alias moved (reload when it did); 0 = off. SIGHUP always reloads.")] = 30.0,
    worker_threads: Annotated[int, typer.Option("--worker-threads", "--workers-threads", min=1, help="Threads decoding and scoring images; requests beyond them queue.")] = 2,
    backend: Annotated[str, typer.Option(help="Inference backend: torch, or onnx (the model folder needs model.onnx from `liveness export onnx`).")] = "torch",
    log_level: Annotated[str, typer.Option(help="uvicorn log level (critical, error, warning, info, debug).")] = "info",
    params_path: Annotated[Path, typer.Option("--params", help="params.yaml whose register section names the tracking store.")] = Path("params.yaml"),
    api_key_file: Annotated[Optional[Path], typer.Option(envvar="LIVENESS_API_KEY_FILE", help="File holding the API key (one line, read once at start; `openssl rand -hex 32 > serve.key && chmod 600 serve.key`). Then POST /v1/liveness, /v1/liveness/batch and GET /metrics answer 401 without 'Authorization: Bearer <key>'; /healthz, /readyz and /docs stay open. $LIVENESS_API_KEY may hold the key itself instead.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow a non-loopback --host without an API key (only when something in front of the server guards access); prints a warning.")] = False,
) -> None:
    """Serve the model over HTTP: POST /v1/liveness and /v1/liveness/batch, GET /healthz, /readyz, /metrics, /docs."""
    import uvicorn

    from liveness.registry.resolve import parse_model_uri
    from liveness.mlflow_store import tracking_uri
    from liveness.serve.app import create_app
    from liveness.serve.auth import API_KEY_ENV, check_bind, loose_permissions, resolve_api_key
    from liveness.serve.settings import ServeSettings

    # Key and bind first: a refused start should not wait for the registry or the model.
    try:
        api_key = resolve_api_key(api_key_file, os.environ.get(API_KEY_ENV))
        notice = check_bind(host, has_key=api_key is not None, insecure=insecure)
    except ValueError as error:  # ApiKeyError, ExposedWithoutKey: their messages say what to do
        _fail(str(error))
    if api_key_file is not None and (loose := loose_permissions(api_key_file)):
        console.print(f"[yellow]warning:[/] {loose}", highlight=False)
    if notice:
        console.print(f"[yellow]warning:[/] {notice}", highlight=False)
    try:
        remote = parse_model_uri(model) is not None
        if not remote and not Path(model).is_dir():
            _fail(f"model {model!r} is neither a models:/ URI nor a folder")
        store = tracking_uri(_registry_settings(params_path).tracking_uri) if remote else None
        settings = ServeSettings(model=model, tracking_uri=store, host=host, port=port, max_bytes=max_bytes,
                                 max_pixels=max_pixels, max_batch=max_batch, timeout_s=timeout_s, poll_s=poll_s,
                                 worker_threads=worker_threads, backend=backend, api_key=api_key)
        service = create_app(settings)
    except ValueError as error:
        _fail(str(error))
    uvicorn.run(service, host=host, port=port, log_level=log_level, workers=1)


if __name__ == "__main__":
    app()
