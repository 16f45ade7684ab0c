"""Prefect flow for the register stage: ``python -m pipeline.register [--params params.yaml]``.

Logs the calibrated generator as an MLflow pyfunc model, registers it (once per content) and sets @challenger.
"""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from liveness.config import load_params
from liveness.registry.register import register
from pipeline.entry import stage_arguments


@flow(name="register", log_prints=True)
def register_flow(params_path: str = "params.yaml") -> dict:
    registration = register(load_params(params_path))
    status = "reused (same content)" if registration.reused else "new version"
    create_markdown_artifact(
        key="registration",
        markdown=f"# Registered {registration.name} v{registration.version} ({status})\n\n"
                 f"- alias: @{registration.alias}\n- run: {registration.run_id}\n"
                 f"- content hash: `{registration.content_hash}`\n",
    )
    return asdict(registration)


def main(argv: list[str] | None = None) -> None:
    arguments = stage_arguments("Run the register stage as a Prefect flow.", "model, curate, register", argv)
    result = register_flow(arguments.params)
    print(f"{result['name']} v{result['version']} is @{result['alias']}; details in reports/registered.json")


if __name__ == "__main__":
    main()
