"""Prefect flow for the demo_data stage: the SYNTHETIC default dataset. ``python -m pipeline.demo_data``."""

from __future__ import annotations

import argparse

from prefect import flow

from liveness.config import load_params
from liveness.data.stage import generate_demo


@flow(name="demo-data", log_prints=True)
def demo_data_flow(params_path: str = "params.yaml") -> dict:
    return generate_demo(load_params(params_path), progress=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the SYNTHETIC demo dataset as a Prefect flow.")
    parser.add_argument("--params", default="params.yaml", help="params file (sections base, demo)")
    arguments = parser.parse_args(argv)
    summary = demo_data_flow(arguments.params)
    print(f"SYNTHETIC demo data: {summary['images']} images in {summary['out_dir']}")


if __name__ == "__main__":
    main()
