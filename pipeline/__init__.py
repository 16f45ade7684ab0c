"""Prefect flows, one per pipeline stage. Thin: the work lives in ``liveness``.

Importing this package sets offline, quiet defaults before Prefect loads (each can be overridden from the
environment): no telemetry, and a generous start-up time for the ephemeral API server, which on a loaded
2-core machine can take longer than Prefect's default 20 s.
"""

import os

for _name, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_name, _value)
