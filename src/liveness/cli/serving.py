"""``liveness serve``: the REST service."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from liveness.cli.common import _fail, _registry_settings, app, console
from liveness.config import DEFAULT_MAX_PIXELS
from liveness.registry.resolve import DEFAULT_MODEL


@app.command()
def serve(
    model: Annotated[str, typer.Option(help="models:/<name>@<alias>, models:/<name>/<version>, a model bundle folder or a pyfunc model folder.")] = DEFAULT_MODEL,
    host: Annotated[str, typer.Option(help="Interface to bind. Loopback (127.0.0.0/8, ::1, localhost) needs no key; any other address needs --api-key-file (or $LIVENESS_API_KEY), or --insecure.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    max_bytes: Annotated[int, typer.Option(min=1, help="Largest encoded image accepted, in bytes (413 above).")] = 10 * 1024 * 1024,
    max_pixels: Annotated[int, typer.Option(min=1, help="Largest width x height accepted, read from the image header before decoding (413 above).")] = DEFAULT_MAX_PIXELS,
    max_batch: Annotated[int, typer.Option(min=1, help="Most images in one /v1/liveness/batch request (413 above).")] = 16,
    timeout_s: Annotated[float, typer.Option(min=0.001, help="Seconds allowed for receiving a body (408) and, separately, for queueing, decoding and scoring it (503).")] = 30.0,
    poll_s: Annotated[float, typer.Option(min=0, help="Seconds between checks whether the alias moved (reload when it did); 0 = off. SIGHUP always reloads.")] = 30.0,
    worker_threads: Annotated[int, typer.Option("--worker-threads", "--workers-threads", min=1, help="Workers decoding and scoring images at once; requests beyond them queue.")] = 2,
    worker_kind: Annotated[str, typer.Option(help="process: each worker decodes and scores in a process of its own (parallel on every core; each loads the model); thread: in the server process's threads (one process, less memory, but the threads take turns at Python's interpreter lock).")] = "process",
    backend: Annotated[str, typer.Option(help="Inference backend: torch, or onnx (the model folder needs model.onnx from `liveness export onnx`).")] = "torch",
    log_level: Annotated[str, typer.Option(help="uvicorn log level (critical, error, warning, info, debug).")] = "info",
    params_path: Annotated[Path, typer.Option("--params", help="params.yaml whose register section names the tracking store.")] = Path("params.yaml"),
    api_key_file: Annotated[Optional[Path], typer.Option(envvar="LIVENESS_API_KEY_FILE", help="File holding the API key (one line, read once at start; `openssl rand -hex 32 > serve.key && chmod 600 serve.key`). Then POST /v1/liveness, /v1/liveness/batch and GET /metrics answer 401 without 'Authorization: Bearer <key>'; /healthz, /readyz and /docs stay open. $LIVENESS_API_KEY may hold the key itself instead.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow a non-loopback --host without an API key (only when something in front of the server guards access); prints a warning.")] = False,
) -> None:
    """Serve the model over HTTP: POST /v1/liveness and /v1/liveness/batch, GET /healthz, /readyz, /metrics, /docs."""
    import uvicorn

    from liveness.registry.resolve import parse_model_uri
    from liveness.mlflow_store import tracking_uri
    from liveness.serve.app import create_app
    from liveness.serve.auth import API_KEY_ENV, check_bind, loose_permissions, resolve_api_key
    from liveness.serve.settings import ServeSettings

    # Key and bind first: a refused start should not wait for the registry or the model.
    try:
        api_key = resolve_api_key(api_key_file, os.environ.get(API_KEY_ENV))
        notice = check_bind(host, has_key=api_key is not None, insecure=insecure)
    except ValueError as error:  # ApiKeyError, ExposedWithoutKey: their messages say what to do
        _fail(str(error))
    if api_key_file is not None and (loose := loose_permissions(api_key_file)):
        console.print(f"[yellow]warning:[/] {loose}", highlight=False)
    if notice:
        console.print(f"[yellow]warning:[/] {notice}", highlight=False)
    try:
        remote = parse_model_uri(model) is not None
        if not remote and not Path(model).is_dir():
            _fail(f"model {model!r} is neither a models:/ URI nor a folder")
        store = tracking_uri(_registry_settings(params_path).tracking_uri) if remote else None
        settings = ServeSettings(model=model, tracking_uri=store, host=host, port=port, max_bytes=max_bytes,
                                 max_pixels=max_pixels, max_batch=max_batch, timeout_s=timeout_s, poll_s=poll_s,
                                 worker_threads=worker_threads, worker_kind=worker_kind, backend=backend,
                                 api_key=api_key)
        service = create_app(settings)
    except ValueError as error:
        _fail(str(error))
    uvicorn.run(service, host=host, port=port, log_level=log_level, workers=1)
