"""The pipeline's stages as commands: ``curate``, ``spoof``, ``calibrate`` and ``register``.

Each runs the same library function as its DVC stage (``dvc.yaml`` runs the Prefect flows in ``pipeline/``,
which add the MLflow stage run and Prefect artifacts) and reads only its own params sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from liveness.cli.common import _fail, _parse_overrides, app, console
from liveness.config import ConfigError, Params, load_params

PARAMS_HELP = "params.yaml to read."
SET_HELP = "Override a param, e.g. --set calibrate.bootstrap_resamples=200 (repeatable)."


def _params(params_path: Path, overrides: list[str] | None) -> Params:
    try:
        return load_params(params_path, _parse_overrides(overrides or []))
    except ConfigError as error:
        _fail(str(error))


def _curate(kind: str, params_path: Path, overrides: list[str] | None, report_dir: Path, progress: bool) -> None:
    from liveness.data.stage import LIVE_KIND, run_curation

    params = _params(params_path, overrides)
    section = params.curate if kind == LIVE_KIND else params.spoof
    try:
        result = run_curation(section, kind, params.base.seed, report_dir, progress=progress)
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error))
    manifest = result.manifest
    accepted = int((manifest["reject_reason"] == "").sum())
    console.print(f"{kind}: {accepted} of {len(manifest)} rows accepted into {section.out_dir}; report in {report_dir}")


@app.command()
def curate(
    params_path: Annotated[Path, typer.Option("--params", help=PARAMS_HELP + " Sections base and curate.")] = Path("params.yaml"),
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help=SET_HELP)] = None,
    report_dir: Annotated[Path, typer.Option(help="Where the curation report goes.")] = Path("reports/curation"),
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Curate the live databases of curate.sources: detect, align, crop, filter by quality, split by identity
    (the curate stage). Every file gets a manifest row, accepted or with its reason."""
    _curate("live", params_path, overrides, report_dir, progress)


@app.command()
def spoof(
    params_path: Annotated[Path, typer.Option("--params", help=PARAMS_HELP + " Sections base and spoof.")] = Path("params.yaml"),
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help=SET_HELP)] = None,
    report_dir: Annotated[Path, typer.Option(help="Where the spoof-set report goes.")] = Path("reports/spoof"),
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Prepare the spoof sets of spoof.sources with the same face path, split by subject into calib and test
    (the prepare_spoof stage)."""
    _curate("spoof", params_path, overrides, report_dir, progress)


@app.command()
def calibrate(
    params_path: Annotated[Path, typer.Option("--params", help=PARAMS_HELP + " Sections base, model, curate and calibrate.")] = Path("params.yaml"),
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help=SET_HELP)] = None,
) -> None:
    """Choose the shipped score and freeze its threshold on the calibration split, then report ISO/IEC 30107-3
    metrics on the test split (the calibrate stage). Writes reports/metrics.json and the score tables."""
    from liveness.evaluate.calibrate import calibrate as run_calibration

    params = _params(params_path, overrides)
    try:
        metrics = run_calibration(params)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        _fail(str(error))
    console.print(f"shipped score {metrics['score']} at threshold {metrics['threshold']:.6g}; metrics in "
                  f"{params.calibrate.report_dir / 'metrics.json'}")


@app.command()
def register(
    params_path: Annotated[Path, typer.Option("--params", help=PARAMS_HELP + " Sections model, curate and register.")] = Path("params.yaml"),
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help=SET_HELP)] = None,
) -> None:
    """Log the calibrated model to MLflow as a pyfunc model, register it (once per content) and point
    register.alias (@challenger) at it (the register stage). Then: `liveness promote`."""
    from liveness.registry.register import register as run_registration

    params = _params(params_path, overrides)
    try:
        registration = run_registration(params)
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error))
    status = "reused (same content)" if registration.reused else "new version"
    console.print(f"{registration.name} v{registration.version} ({status}) is @{registration.alias}")
