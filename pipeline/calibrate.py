"""Prefect flow for the calibrate stage: ``python -m pipeline.calibrate [--params params.yaml]``.

The threshold is frozen on the calibration data (live val + spoof calib); ISO/IEC 30107-3 metrics are then
measured on the held-out spoof test split.
"""

from __future__ import annotations


import mlflow
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from liveness.config import load_params
from liveness.evaluate.calibrate import calibrate
from liveness.evaluate.calibration_report import SCORE_TABLE_FILE, SKEW_FILE, STATISTICS_FILE
from pipeline.tracking import stage_run
from pipeline.entry import stage_arguments

HEADLINE = ("auc", "eer", "hter", "max_apcer", "bpcer", "bpcer20", "bpcer100")


@flow(name="calibrate", log_prints=True)
def calibrate_flow(params_path: str = "params.yaml") -> dict:
    params = load_params(params_path)
    metrics = calibrate(params)
    test = metrics.get("test", {})
    sections = {"calibrate": params.calibrate.model_dump(mode="json"), "model": params.model.model_dump(mode="json")}
    with stage_run("calibrate", sections, metrics.get("data", "real")):
        mlflow.log_metrics({f"test_{name}": float(value) for name, value in test.items()
                            if isinstance(value, (int, float)) and value == value})
        mlflow.log_metric("threshold", float(metrics["threshold"]))
        mlflow.log_metrics({f"calibration_{score}_{key.replace('/', '_')}": float(value)
                            for score, row in metrics["calibration"].items() for key, value in row.items()
                            if isinstance(value, (int, float)) and value == value})
        mlflow.log_metrics({name: float(value) for name, value in {
            "shortcut_auc": metrics.get("shortcut_auc"),
            "reconstruction_psnr_db": (metrics.get("reconstruction") or {}).get("psnr_db"),
            "reconstruction_ssim": (metrics.get("reconstruction") or {}).get("ssim")}.items()
            if isinstance(value, (int, float)) and value == value})
        mlflow.log_metrics({f"test_{species}_{key}_vs_baseline": float(row[key])
                            for species, row in (metrics.get("comparison") or {}).items()
                            for key in ("difference", "ci_low", "ci_high", "baseline_auc")
                            if isinstance(row.get(key), (int, float)) and row[key] == row[key]})
        mlflow.set_tag("shipped_score", metrics["score"])
        report_dir = params.calibrate.report_dir
        mlflow.log_artifact(str(report_dir / "metrics.json"))
        mlflow.log_artifact(str(report_dir / SCORE_TABLE_FILE))
        mlflow.log_artifact(str(report_dir / STATISTICS_FILE))
        mlflow.log_artifact(str(report_dir / SKEW_FILE))
        mlflow.log_artifacts(str(report_dir / "plots"), artifact_path="plots")
    rows = [{"metric": name, "value": test.get(name), "ci_low": test.get(f"{name}_ci_low"),
             "ci_high": test.get(f"{name}_ci_high")} for name in HEADLINE if name in test]
    create_table_artifact(key="calibration-test-metrics", table=rows,
                          description=f"{metrics.get('data', '')} data, score {metrics.get('score')}")
    create_markdown_artifact(
        key="calibration-summary",
        markdown=f"# Calibration ({metrics.get('data', '')} data)\n\n- score: {metrics.get('score')}\n"
                 f"- policy: {metrics.get('policy')} (target {metrics.get('target')})\n"
                 f"- threshold: {metrics.get('threshold')}\n\n"
                 + (report_dir / SCORE_TABLE_FILE).read_text(),
    )
    return metrics


def main(argv: list[str] | None = None) -> None:
    arguments = stage_arguments("Run the calibrate stage as a Prefect flow.", "base, model, calibrate", argv)
    metrics = calibrate_flow(arguments.params)
    print(f"threshold {metrics.get('threshold')} on {metrics.get('score')}; metrics in reports/metrics.json")


if __name__ == "__main__":
    main()
