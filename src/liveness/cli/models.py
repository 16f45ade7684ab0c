"""Commands on registered models: ``promote``, ``export onnx`` and ``predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from liveness.cli.common import _fail, _registry_settings, app, console, export_app
from liveness.data.inputs import find_input_files, read_inputs
from liveness.registry.resolve import DEFAULT_MODEL


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


def _json_value(value: object) -> object:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and value != value:
        return None
    return value


def _model_bundle(model: str, params_path: Path, workdir: Path) -> Path:
    """The bundle folder of a local bundle, a local pyfunc model folder or a models:/ URI (downloaded under
    ``workdir``)."""
    from mlflow.exceptions import MlflowException

    from liveness.mlflow_store import tracking_uri
    from liveness.registry.resolve import fetch_bundle, parse_model_uri

    try:
        remote = parse_model_uri(model) is not None
        store = tracking_uri(_registry_settings(params_path).tracking_uri) if remote else None
        return fetch_bundle(model, store, workdir)
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error))
    except (MlflowException, OSError) as error:
        _fail(f"cannot load model {model}: {error}. Register one (`python -m pipeline.register`, "
              "`liveness promote`) or pass --model")


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
    import itertools
    import json

    from rich.markup import escape

    from liveness.bundle import synthetic_warning

    info, trained_on, threshold, score = _predict_model(model, params_path, backend)
    files, skipped = find_input_files(paths)
    for folder, count in skipped:
        console.print(f"[yellow]note:[/] skipped {count} file(s) under {folder} that are hidden or neither images "
                      "nor videos by name or content" if count else f"[yellow]note:[/] {folder} holds no files")
    if not files:
        _fail(f"no image or video found under {', '.join(map(str, paths))}")
    failures, warned, total = 0, False, 0
    items = read_inputs(files, frames)  # read batch by batch: a folder of any size fits in memory
    while chunk := list(itertools.islice(items, batch_size)):
        total += len(chunk)
        readable = [item for item in chunk if item[2] is not None]
        outputs = iter(_isolated(score, [item[2] for item in readable], threshold) if readable else [])
        for path, frame, data, reason, detail in chunk:
            row = next(outputs) if data is not None else _rejected_row(reason, detail, threshold)
            row = {"path": path, "frame": frame, **{key: _json_value(value) for key, value in row.items()},
                   "trained_on": trained_on, "model": info}
            if trained_on == "synthetic" and row["score"] is not None and not warned:
                console.print(f"[bold yellow]warning:[/] {escape(synthetic_warning(info['name'], info['version']))}",
                              highlight=False)
                warned = True
            print(json.dumps(row), flush=True)
            if row["label"] == "rejected":
                failures += 1
                said = f"{row['reason']} ({row['detail']})" if row.get("detail") else row["reason"]
                console.print(f"[red]failed:[/] {escape(path)}{'' if frame is None else f' frame {frame}'}: "
                              f"{escape(said)}", highlight=False)
    if failures:
        _fail(f"{failures} of {total} inputs failed", code=1)


def _rejected_row(reason: str, detail: str, threshold: float | None) -> dict:
    return {"face_found": False, "box": None, "score": None, "threshold": threshold, "label": "rejected",
            "reason": reason, "converted": "", "detail": detail}


def _isolated(score, images: list[bytes], threshold: float | None) -> list[dict]:
    """Rows for ``images``; when the model call fails, each image is retried alone so only the culprit fails."""
    try:
        return score(images)
    except Exception:  # noqa: BLE001 - one image must never cost the others their rows
        if len(images) == 1:
            return [_rejected_row("processing_failed", "the model failed on this image", threshold)]
    return [_isolated(score, [image], threshold)[0] for image in images]


def _predict_model(model: str, params_path: Path, backend: str):
    """(model {name, version, uri}, trained_on, threshold, images -> rows) for ``liveness predict``; the threshold
    also goes into the rows of files that fail before the model sees them.

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
        return (info, predictor.trained_on, predictor.threshold,
                lambda images: [p.as_dict() for p in predictor.predict(images)])
    local = Path(model)
    if not remote and bundle_folder(local) == local:  # a bundle folder: score it directly, as serve does
        try:
            predictor = Predictor(local)
        except (FileNotFoundError, ValueError) as error:
            _fail(str(error))
        return (info, predictor.trained_on, predictor.threshold,
                lambda images: [p.as_dict() for p in predictor.predict(images)])
    pinned = f"models:/{source.name}/{revision}" if isinstance(source, RegistrySource) else model
    try:
        loaded = mlflow.pyfunc.load_model(pinned)
    except (MlflowException, OSError) as error:
        cannot_load(error)
    try:  # the bundle config, not the output columns: a model registered before trained_on existed lacks them
        config = loaded.unwrap_python_model()._predictor.config
    except AttributeError:
        _fail(f"{model} is not a liveness model (its pyfunc model has no liveness predictor)")
    return (info, config.data, config.threshold,
            lambda images: loaded.predict(pd.DataFrame({"image": images})).to_dict("records"))
