"""Prefect flow for the demo_data stage: the SYNTHETIC default dataset. ``python -m pipeline.demo_data``."""

from __future__ import annotations

import os

from prefect import flow

from liveness.config import load_params
from liveness.data.stage import generate_demo
from pipeline.entry import stage_arguments


@flow(name="demo-data", log_prints=True)
def demo_data_flow(params_path: str = "params.yaml", workers: int = 2) -> dict:
    """``workers`` only changes speed: the bytes are the same, so it is not a DVC param."""
    return generate_demo(load_params(params_path), progress=False, workers=workers)


def main(argv: list[str] | None = None) -> None:
    arguments = stage_arguments(
        "Generate the SYNTHETIC demo dataset as a Prefect flow.", "base, demo", argv,
        lambda parser: parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                                           help="processes rendering identities (the output is the same for any "
                                                "number)"))
    summary = demo_data_flow(arguments.params, arguments.workers)
    print(f"SYNTHETIC demo data: {summary['images']} images in {summary['out_dir']}")


if __name__ == "__main__":
    main()
