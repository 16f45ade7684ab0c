"""What every command shares: the Typer app and its groups, the consoles, failing with a message, --set
overrides, and pointing MLflow at the params' store."""

from __future__ import annotations

import os
from pathlib import Path

import typer
import yaml
from rich.console import Console

from liveness.config import ConfigError, load_params

app = typer.Typer(
    help="One-class silent face liveness: train on live faces only, score spoofs by latent inconsistency.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
identity_app = typer.Typer(help="The frozen identity network f (VGGFace2 InceptionResnetV1, or dlib's face ResNet).",
                           no_args_is_help=True)
export_app = typer.Typer(help="Deployable forms of a model (ONNX).", no_args_is_help=True)
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
