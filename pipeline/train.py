"""Prefect flow for the train stage: ``python -m pipeline.train [--params params.yaml]``.

Checkpoints live under ``runs/checkpoints/<key of params and data>``, outside the DVC output ``runs/train``,
so an interrupted ``dvc repro`` resumes where it stopped while a change of params starts a fresh run.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import mlflow
from prefect import flow
from prefect.artifacts import create_markdown_artifact

from liveness.config import load_params
from liveness.train.stage import checkpoint_key, training_dataset, validation_crops
from liveness.train.trainer import Trainer
from pipeline.tracking import data_source, stage_run
from pipeline.entry import stage_arguments

OUT_DIR = Path("runs/train")
CHECKPOINTS = Path("runs/checkpoints")


@flow(name="train", log_prints=True)
def train_flow(params_path: str = "params.yaml", out_dir: str = str(OUT_DIR), progress: bool = True) -> dict:
    params = load_params(params_path)
    dataset, description = training_dataset(params)
    validation, held_out = validation_crops(params)
    print(f"data: {description}; reconstruction quality on {held_out}")
    checkpoint_dir = CHECKPOINTS / checkpoint_key(params, params.train.data)
    with stage_run("train", {}, data_source(params.train.data)) as run:  # the trainer logs params and losses
        result = Trainer(params, Path(out_dir), progress=progress, checkpoint_dir=checkpoint_dir).fit(dataset, validation=validation)
        mlflow.log_artifact(str(Path(out_dir) / "summary.json"))
        print(f"MLflow run {run.info.run_id}")
    losses = "\n".join(f"| {name} | {value:.4f} |" for name, value in result.final_losses.items())
    create_markdown_artifact(
        key="train-summary",
        markdown=f"# Training\n\n- data: {description}\n- epochs: {result.epochs}, steps: {result.steps}\n"
                 f"- identity: {result.identity_backbone} (stand-in: {result.identity_stand_in})\n"
                 f"- held-out reconstruction: {result.reconstruction}\n\n"
                 f"| loss | last value |\n|---|---|\n{losses}\n",
    )
    return asdict(result)


def main(argv: list[str] | None = None) -> None:
    arguments = stage_arguments(
        "Run the train stage as a Prefect flow.", "base, model, identity, loss, train", argv,
        lambda parser: parser.add_argument("--no-progress", action="store_true", help="hide the progress bar"))
    result = train_flow(arguments.params, progress=not arguments.no_progress)
    print(f"trained {result['epochs']} epochs, {result['steps']} steps; outputs in {OUT_DIR}")


if __name__ == "__main__":
    main()
