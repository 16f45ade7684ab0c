"""The FastAPI application: ``create_app(settings)``.

Endpoints: ``POST /v1/liveness`` (one image, raw body or a multipart file), ``POST /v1/liveness/batch`` (several
multipart files), ``GET /healthz`` (the process answers), ``GET /readyz`` (a model is loaded), ``GET /metrics``
(Prometheus) and the OpenAPI docs at ``/docs``. Decoding and inference run in a bounded pool of worker threads so
the event loop keeps answering health checks while the model works; with ``worker_kind="process"`` (the default)
each worker thread hands its images to a worker process of its own (``serve/processes.py``). Bad input is a 4xx
JSON ``{"error", "detail"}``; a face that is not found is a valid answer (200, label ``no_face``). Every answer,
and every item of a batch, says what the model was trained on (``trained_on``: "synthetic" or "real") next to
the model's name and version.
With ``settings.api_key`` the scoring endpoints and /metrics answer 401 without ``Authorization: Bearer <key>``
(``serve/auth.py``).
"""

from __future__ import annotations

import asyncio
import signal
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from liveness.registry.resolve import ModelSource, open_source
from liveness.serve.auth import bearer_guard
from liveness.serve.metrics import MetricsMiddleware, ServeMetrics
from liveness.serve.model import (InferenceExecutor, ModelHolder, PredictorFactory, predictor_factory,
                                  torch_threads_per_worker)
from liveness.serve.processes import ProcessWorkers
from liveness.serve.routes import Service, health, install_error_handlers, scoring
from liveness.serve.settings import ServeSettings


def create_app(settings: ServeSettings, *, source: ModelSource | None = None,
               factory: PredictorFactory | None = None) -> FastAPI:
    """The service for ``settings``; ``source`` and ``factory`` replace the model lookup and loading (tests)."""
    metrics = ServeMetrics()
    holder = ModelHolder(source or open_source(settings.model, settings.tracking_uri), metrics,
                         poll_s=settings.poll_s, factory=factory or predictor_factory(settings.backend))
    service = Service(settings, holder, metrics)

    # A stand-in factory (tests) exists only in this process, so its predictors run in the worker threads.
    in_processes = settings.worker_kind == "process" and factory is None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.executor = InferenceExecutor(settings.worker_threads, holder, metrics)
        if in_processes:
            service.processes = ProcessWorkers(settings.worker_threads,
                                               torch_threads_per_worker(0, settings.worker_threads),
                                               settings.backend, metrics.observe_phase)
            holder.before_swap = service.processes.preload
        holder.start()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, holder.request_reload)
            hangup = True
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):  # not the main thread, or Windows
            hangup = False
        try:
            yield
        finally:
            if hangup:
                loop.remove_signal_handler(signal.SIGHUP)
            holder.stop()
            service.executor.shutdown(wait=False, cancel_futures=True)
            if service.processes is not None:
                service.processes.shutdown()

    app = FastAPI(title="liveness", version="1", lifespan=lifespan,
                  description="One-class silent face liveness. Scores are only as good as the model served: "
                              "every answer's trained_on says whether it was trained on synthetic or real data, and "
                              "its model card says more.")
    app.state.service = service
    app.state.settings, app.state.holder, app.state.metrics = settings, holder, metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    install_error_handlers(app, metrics)
    # Routes that score or count: with a key they answer 401 before reading any of the body.
    app.include_router(scoring, dependencies=[Depends(bearer_guard(settings.api_key))])
    app.include_router(health)
    return app
