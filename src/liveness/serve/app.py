"""The FastAPI application: ``create_app(settings)``.

Endpoints: ``POST /v1/liveness`` (one image, raw body or a multipart file), ``POST /v1/liveness/batch`` (several
multipart files), ``GET /healthz`` (the process answers), ``GET /readyz`` (a model is loaded), ``GET /metrics``
(Prometheus) and the OpenAPI docs at ``/docs``. Decoding and inference run in a bounded thread pool so the event
loop keeps answering health checks while the model works. Bad input is a 4xx JSON ``{"error", "detail"}``; a
face that is not found is a valid answer (200, label ``no_face``). Every answer, and every item of a batch, says
what the model was trained on (``trained_on``: "synthetic" or "real") next to the model's name and version.
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
from liveness.serve.model import InferenceExecutor, ModelHolder, PredictorFactory, predictor_factory
from liveness.serve.routes import Service, health, install_error_handlers, scoring
from liveness.serve.settings import ServeSettings


def create_app(settings: ServeSettings, *, source: ModelSource | None = None,
               factory: PredictorFactory | None = None) -> FastAPI:
    """The service for ``settings``; ``source`` and ``factory`` replace the model lookup and loading (tests)."""
    metrics = ServeMetrics()
    holder = ModelHolder(source or open_source(settings.model, settings.tracking_uri), metrics,
                         poll_s=settings.poll_s, factory=factory or predictor_factory(settings.backend))
    service = Service(settings, holder, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.executor = InferenceExecutor(settings.worker_threads, holder, metrics)
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
