"""The service's routes, as routers whose handlers get what they need from FastAPI dependencies.

``scoring`` holds the endpoints that score or count (``/v1/liveness``, ``/v1/liveness/batch``, ``/metrics``): with
an API key they answer 401 before reading any of the body. ``health`` holds ``/healthz`` and ``/readyz``, which
stay open. ``create_app`` puts the ``Service`` on ``app.state``; ``install_error_handlers`` turns every refusal into
the ``{"error", "detail"}`` JSON body.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any, Callable, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from liveness.bundle import Prediction
from liveness.serve.limits import ServeError, Upload, check_image, read_body, uploads
from liveness.serve.metrics import ServeMetrics
from liveness.serve.model import InferenceExecutor, LoadedModel, ModelHolder
from liveness.serve.processes import ProcessWorkers
from liveness.serve.schemas import (
    BATCH_BODY,
    ERROR_RESPONSES,
    IMAGE_BODY,
    KEYED_RESPONSES,
    BatchItem,
    BatchResponse,
    ErrorBody,
    LivenessResponse,
    ModelInfo,
    Result,
    result_of,
)
from liveness.serve.settings import ServeSettings
from liveness.serve.work import decode_and_predict

T = TypeVar("T")


@dataclass
class Service:
    """What the handlers share: the settings, the model holder, the metrics and (once started) the worker pool."""

    settings: ServeSettings
    holder: ModelHolder
    metrics: ServeMetrics
    executor: InferenceExecutor | None = None
    processes: ProcessWorkers | None = None  # with worker processes: where the worker threads send their jobs

    def decode_and_predict(self, model: LoadedModel, images: list[Upload]) -> list[Prediction | ServeError]:
        """Runs in a worker thread: decode and score ``images``, in the thread's worker process if there are any."""
        if self.processes is None:
            return decode_and_predict(model, images, self.settings.max_pixels)
        return self.processes.decode_and_predict(model, images, self.settings.max_pixels,
                                                 self.executor.torch_threads())

    async def in_worker(self, work: Callable[[], T]) -> T:
        """``work`` in the bounded worker pool, within the timeout (503 past it)."""
        self.metrics.inflight.inc()
        timeout_s = self.settings.timeout_s
        try:
            future = asyncio.get_running_loop().run_in_executor(self.executor, work)
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise ServeError(503, "timeout", f"no answer within {timeout_s:g} s; the server is overloaded or the "
                                             "image is too slow to process, retry later") from None
        finally:
            self.metrics.inflight.dec()

    async def read_images(self, request: Request, max_files: int) -> list[Upload]:
        settings = self.settings
        try:
            body = await asyncio.wait_for(read_body(request, settings.body_limit(max_files)), settings.timeout_s)
        except TimeoutError:
            raise ServeError(408, "request_timeout", f"the body did not arrive within {settings.timeout_s:g} s") from None
        return await uploads(request, body, max_files)

    def count(self, prediction: Prediction) -> Result:
        self.metrics.predictions.labels(prediction.label).inc()
        return result_of(prediction)

    def failed_item(self, index: int, image: Upload, error: ServeError, trained_on: str) -> BatchItem:
        self.metrics.refusals.labels(error.error).inc()
        return BatchItem(index=index, filename=image.filename, status=error.status, trained_on=trained_on,
                         error=error.error, detail=error.detail)


def get_service(request: Request) -> Service:
    return request.app.state.service


def loaded_model(service: Annotated[Service, Depends(get_service)]) -> LoadedModel:
    """The model being served; 503 until one is loaded."""
    model = service.holder.current
    if model is None:
        raise ServeError(503, "not_ready", f"the model is not loaded yet ({service.holder.last_error or 'loading'})")
    return model


ServiceDep = Annotated[Service, Depends(get_service)]
ModelDep = Annotated[LoadedModel, Depends(loaded_model)]

scoring = APIRouter()
health = APIRouter()


@scoring.post("/v1/liveness", response_model=LivenessResponse, responses={**ERROR_RESPONSES, **KEYED_RESPONSES},
              openapi_extra=IMAGE_BODY, summary="Score one image (raw body or one multipart file)")
async def liveness(request: Request, service: ServiceDep, model: ModelDep) -> LivenessResponse:
    start, settings = time.perf_counter(), service.settings
    images = await service.read_images(request, 1)
    if len(images) != 1:
        raise ServeError(400, "several_images", "send one image here, or several to /v1/liveness/batch")
    check_image(images[0], settings.max_bytes, settings.max_pixels)
    (outcome,) = await service.in_worker(lambda: service.decode_and_predict(model, images))
    if isinstance(outcome, ServeError):
        raise outcome
    return LivenessResponse(**service.count(outcome).model_dump(), model=ModelInfo(**model.info()),
                            latency_ms=round((time.perf_counter() - start) * 1000, 3))


@scoring.post("/v1/liveness/batch", response_model=BatchResponse, responses={**ERROR_RESPONSES, **KEYED_RESPONSES},
              openapi_extra=BATCH_BODY,
              summary="Score several images (multipart files); each item says its own status")
async def liveness_batch(request: Request, service: ServiceDep, model: ModelDep) -> BatchResponse:
    start, settings = time.perf_counter(), service.settings
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ServeError(415, "unsupported_content_type", "a batch is multipart/form-data with one file part per "
                                                          "image; send single raw images to /v1/liveness")
    images = await service.read_images(request, settings.max_batch)
    items: list[BatchItem | None] = [None] * len(images)
    accepted: list[int] = []
    for index, image in enumerate(images):
        try:
            check_image(image, settings.max_bytes, settings.max_pixels)
            accepted.append(index)
        except ServeError as error:
            items[index] = service.failed_item(index, image, error, model.trained_on)
    chosen = [images[i] for i in accepted]
    outcomes = (await service.in_worker(lambda: service.decode_and_predict(model, chosen))
                if chosen else [])
    for index, outcome in zip(accepted, outcomes, strict=True):
        items[index] = (service.failed_item(index, images[index], outcome, model.trained_on)
                        if isinstance(outcome, ServeError)
                        else BatchItem(index=index, filename=images[index].filename, status=200,
                                       trained_on=outcome.trained_on, result=service.count(outcome)))
    return BatchResponse(results=[item for item in items if item is not None], model=ModelInfo(**model.info()),
                         trained_on=model.trained_on, latency_ms=round((time.perf_counter() - start) * 1000, 3))


@scoring.get("/metrics", summary="Prometheus metrics", response_class=Response, responses=KEYED_RESPONSES)
async def prometheus(service: ServiceDep) -> Response:
    return Response(service.metrics.exposition(), media_type=service.metrics.content_type)


@health.get("/healthz", summary="The process is up and its event loop answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz", summary="200 once a model is loaded, else 503",
            responses={503: {"model": ErrorBody, "description": "No model loaded yet"}})
async def readyz(service: ServiceDep, model: ModelDep) -> dict[str, Any]:
    holder = service.holder
    return {"status": "ready", "model": model.info(), "trained_on": model.trained_on, "loaded_at": model.loaded_at,
            "reloads": holder.reloads, "last_error": holder.last_error}


def install_error_handlers(app: FastAPI, metrics: ServeMetrics) -> None:
    """Every refusal as ``{"error", "detail"}`` JSON with its status; 4xx refusals are counted by reason."""

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, error: ServeError) -> JSONResponse:
        if error.status < 500:
            metrics.refusals.labels(error.error).inc()
        return JSONResponse({"error": error.error, "detail": error.detail}, status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(error.detail)}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid_request", "detail": str(error.errors())}, status_code=422)
