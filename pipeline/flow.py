"""The whole pipeline as one Prefect flow around ``dvc repro``: ``python -m pipeline.flow [--promote]``.

DVC owns the stage graph and caching; this flow gives the run a schedule-able entry point, one pipeline id
shared by every stage's MLflow run (``LIVENESS_PIPELINE_ID``), and a summary artifact.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from pipeline.tracking import PIPELINE_ID_VARIABLE, pipeline_id


def _environment() -> dict[str, str]:
    """The stage commands call ``python``: put this interpreter's folder first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@task(name="dvc-repro")
def dvc_repro(arguments: list[str]) -> str:
    command = [str(Path(sys.executable).parent / "dvc"), "repro", *arguments]
    completed = subprocess.run(command, env=_environment(), capture_output=True, text=True)
    print(completed.stdout)
    if completed.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{completed.stderr[-4000:]}")
    return completed.stdout


@task(name="promote")
def promote() -> str:
    completed = subprocess.run([str(Path(sys.executable).parent / "liveness"), "promote"], env=_environment(),
                               capture_output=True, text=True)
    print(completed.stdout + completed.stderr)
    return "promoted" if completed.returncode == 0 else "refused"


@flow(name="liveness-pipeline", log_prints=True)
def pipeline_flow(repro_arguments: list[str] | None = None, run_promotion: bool = False) -> dict:
    run_id = pipeline_id()  # exported, so every stage's MLflow run carries the same pipeline_id tag
    output = dvc_repro(repro_arguments or [])
    stages = [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]
    decision = promote() if run_promotion else "not asked"
    create_markdown_artifact(key="pipeline-summary", markdown=(
        f"# Pipeline {run_id}\n\n- stages run: {', '.join(stages) or 'none (up to date)'}\n"
        f"- promotion: {decision}\n"))
    return {"pipeline_id": run_id, "stages": stages, "promotion": decision}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run `dvc repro` (and optionally promote) as one Prefect flow.")
    parser.add_argument("--promote", action="store_true", help="run `liveness promote` after the pipeline")
    parser.add_argument("repro_arguments", nargs="*", help="extra arguments for dvc repro, e.g. a stage name")
    arguments = parser.parse_args(argv)
    summary = pipeline_flow(arguments.repro_arguments, arguments.promote)
    print(f"pipeline {summary['pipeline_id']}: ran {summary['stages'] or 'nothing'}; promotion {summary['promotion']}")
    print(f"({PIPELINE_ID_VARIABLE}={summary['pipeline_id']} tags every stage's MLflow run)")


if __name__ == "__main__":
    main()
