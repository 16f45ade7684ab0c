"""Prefect flows for the curate (live) and prepare_spoof stages.

    python -m pipeline.curate live  [--params params.yaml]
    python -m pipeline.curate spoof [--params params.yaml]
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from liveness.config import load_params
from liveness.data.report import reason_counts
from liveness.data.stage import LIVE_KIND, SPOOF_KIND, run_curation
from pipeline.runners import prefect_mapper, task_runner_for
from pipeline.tracking import stage_run
from pipeline.entry import stage_arguments

REPORT_DIRS = {LIVE_KIND: Path("reports/curation"), SPOOF_KIND: Path("reports/spoof")}


def _section(params, kind):
    return params.curate if kind == LIVE_KIND else params.spoof


@flow(name="curate", log_prints=True)
def curation_flow(kind: str, params_path: str = "params.yaml", report_dir: str | None = None) -> dict:
    """Curate one kind of data (live or spoof) and publish the summary as Prefect artifacts."""
    params = load_params(params_path)
    section = _section(params, kind)
    report = Path(report_dir) if report_dir else REPORT_DIRS[kind]
    result = run_curation(section, kind, params.base.seed, report,
                          mapper=prefect_mapper(window=4 * section.runner.workers), progress=False)
    manifest = result.manifest
    counts = reason_counts(manifest)
    create_markdown_artifact(key=f"{kind}-curation-summary", markdown=(report / "summary.md").read_text(),
                             description=f"{kind} curation summary")
    create_table_artifact(key=f"{kind}-reject-reasons",
                          table=[{"reason": reason, "rows": int(count)} for reason, count in counts.items()]
                          or [{"reason": "(none)", "rows": 0}])
    summary = {"rows": len(manifest), "accepted": int((manifest["reject_reason"] == "").sum())}
    source = "synthetic" if bool(manifest["synthetic"].all()) else "real"
    stage = "curate" if kind == LIVE_KIND else "prepare_spoof"
    with stage_run(stage, {stage: section.model_dump(mode="json")}, source):
        mlflow.log_metrics({"rows": summary["rows"], "accepted": summary["accepted"],
                            **{f"rejected_{reason}": int(count) for reason, count in counts.items()}})
        mlflow.log_artifacts(str(report), artifact_path=f"reports/{report.name}")
    return summary


def main(argv: list[str] | None = None) -> None:
    arguments = stage_arguments(
        "Run the live curation or spoof preparation stage as a Prefect flow.", "base, curate or spoof", argv,
        lambda parser: parser.add_argument("kind", choices=[LIVE_KIND, SPOOF_KIND],
                                           help="live: curate stage; spoof: prepare_spoof stage"))
    params = load_params(arguments.params)
    runner = task_runner_for(_section(params, arguments.kind).runner)
    summary = curation_flow.with_options(task_runner=runner)(arguments.kind, arguments.params)
    print(f"{arguments.kind}: {summary['accepted']} of {summary['rows']} rows accepted")


if __name__ == "__main__":
    main()
