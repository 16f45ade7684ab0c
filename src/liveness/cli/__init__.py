"""The ``liveness`` command line: one entry point for every stage, one module per command group.

``training`` (train, demo-data, identity, ablate), ``stages`` (curate, spoof, calibrate, register), ``models``
(promote, export onnx, predict) and ``serving`` (serve); ``common`` holds the app and what they share.
"""

from liveness.cli.common import app, export_app, identity_app
from liveness.cli import training, stages, models, serving  # noqa: F401,E402 - registers the commands

app.add_typer(identity_app, name="identity")
app.add_typer(export_app, name="export")

__all__ = ["app"]
