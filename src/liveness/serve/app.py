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
import logging
import math
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Callable, Literal, TypeVar

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from liveness.data.decode import DecodedImage, ImageRejected, decode_image
from liveness.bundle import Prediction, TrainedOn
from liveness.registry.resolve import ModelSource, open_source
from liveness.serve.auth import UNAUTHORIZED_RESPONSE, bearer_guard
from liveness.serve.limits import ServeError, Upload, check_image, read_body, rejection, uploads
from liveness.serve.metrics import MetricsMiddleware, ServeMetrics
from liveness.serve.model import InferenceExecutor, LoadedModel, ModelHolder, PredictorFactory, predictor_factory
from liveness.serve.settings import ServeSettings

log = logging.getLogger("liveness.serve")
T = TypeVar("T")


TRAINED_ON_HELP = ('What the model was trained on (its bundle config\'s data): "synthetic" or "real". A model '
                   "trained on synthetic data gives scores that say nothing about real faces")


class ModelInfo(BaseModel):
    name: str
    version: str = Field(description='Registered version number, or "local" for a folder')
    uri: str


class Result(BaseModel):
    faces: int | None = Field(description="Faces behind the answer: 0 (none found), 1 (scored); null when several "
                                          "faces were found and the multi-face policy refused to choose")
    face_found: bool
    box: list[float] | None = Field(description="x1, y1, x2, y2 of the scored face in source pixels")
    score: float | None = Field(description="Higher means more likely an attack; null when no face was scored")
    threshold: float
    label: Literal["live", "spoof", "no_face", "rejected"]
    reason: str = Field(description='Why a face was not scored (e.g. "multiple_faces"); "" otherwise')
    trained_on: TrainedOn = Field(description=TRAINED_ON_HELP)
    converted: str = Field("", description='How the image became 8-bit RGB, e.g. "rgba->rgb" (alpha composited on '
                                            'neutral grey) or "i;16->rgb"; "" when it already was')


class LivenessResponse(Result):
    model: ModelInfo
    latency_ms: float


class BatchItem(BaseModel):
    index: int
    filename: str
    status: int = Field(description="200 when answered, else the 4xx the image would get on its own")
    trained_on: TrainedOn = Field(description=TRAINED_ON_HELP)
    result: Result | None = None
    error: str | None = None
    detail: str | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
    model: ModelInfo
    trained_on: TrainedOn = Field(description=TRAINED_ON_HELP)
    latency_ms: float


class ErrorBody(BaseModel):
    error: str
    detail: str


_IMAGE_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                       "properties": {"image": {"type": "string", "format": "binary"}}}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}}}
_BATCH_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["images"], "properties": {
        "images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Empty body or malformed multipart"},
    408: {"model": ErrorBody, "description": "The body did not arrive within the timeout"},
    413: {"model": ErrorBody, "description": "Too many bytes, too many images, or too many pixels (from the header)"},
    415: {"model": ErrorBody, "description": "Not an image, an animation, or a format or pixel mode that cannot be "
                                             "decoded to RGB (grayscale, palette, alpha, CMYK and 16-bit are converted)"},
    422: {"model": ErrorBody, "description": "Truncated or corrupt image data"},
    503: {"model": ErrorBody, "description": "No model loaded yet, or inference timed out"},
}
_KEYED: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody, **UNAUTHORIZED_RESPONSE}}


def _result(prediction: Prediction) -> Result:
    faces = 1 if prediction.face_found else (0 if prediction.label == "no_face" else None)
    score = prediction.score if math.isfinite(prediction.score) else None
    return Result(faces=faces, face_found=prediction.face_found, box=prediction.box, score=score,
                  threshold=prediction.threshold, label=prediction.label, reason=prediction.reason,
                  trained_on=prediction.trained_on, converted=prediction.converted)


def _decode_and_predict(model: LoadedModel, images: list[Upload], max_pixels: int,
                        ) -> list[Prediction | ServeError]:
    """Runs in a worker thread: decode each image (a refusal stays in its slot), then one predict call. If that
    call fails, each image is retried alone, so one image never costs the others their answers."""
    outcomes: list[Prediction | ServeError | None] = [None] * len(images)
    decoded: dict[int, DecodedImage] = {}
    for index, image in enumerate(images):
        try:
            decoded[index] = decode_image(image.data, max_pixels, source=image.filename)
        except ImageRejected as error:
            outcomes[index] = rejection(error)
    if decoded:
        try:
            predictions: list[Prediction | ServeError] = list(
                model.predictor.predict([item.pixels for item in decoded.values()]))
        except Exception:  # noqa: BLE001 - isolate: retry one by one below
            predictions = [_predict_one(model, images[index].filename, item) for index, item in decoded.items()]
        for (index, item), prediction in zip(decoded.items(), predictions, strict=True):
            outcomes[index] = (replace(prediction, converted=item.converted)
                               if isinstance(prediction, Prediction) else prediction)
    return outcomes  # type: ignore[return-value]


def _predict_one(model: LoadedModel, filename: str, item: DecodedImage) -> Prediction | ServeError:
    try:
        (prediction,) = model.predictor.predict([item.pixels])
        return prediction
    except Exception as error:  # noqa: BLE001 - a 4xx for this image, never a 500 for the request
        log.exception("scoring %s failed", filename)
        return ServeError(422, "processing_failed", f"{filename}: the image decoded but could not be scored "
                                                    f"({type(error).__name__}); report it with the file")


def create_app(settings: ServeSettings, *, source: ModelSource | None = None,
               factory: PredictorFactory | None = None) -> FastAPI:
    """The service for ``settings``; ``source`` and ``factory`` replace the model lookup and loading (tests)."""
    metrics = ServeMetrics()
    holder = ModelHolder(source or open_source(settings.model, settings.tracking_uri), metrics,
                         poll_s=settings.poll_s, factory=factory or predictor_factory(settings.backend))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.executor = InferenceExecutor(settings.worker_threads, holder, metrics)
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
            app.state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="liveness", version="1", lifespan=lifespan,
                  description="One-class silent face liveness. Scores are only as good as the model served: "
                              "every answer's trained_on says whether it was trained on synthetic or real data, and "
                              "its model card says more.")
    app.state.settings, app.state.holder, app.state.metrics = settings, holder, metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def error_response(error: ServeError) -> JSONResponse:
        return JSONResponse({"error": error.error, "detail": error.detail}, status_code=error.status)

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, error: ServeError) -> JSONResponse:
        if error.status < 500:
            metrics.refusals.labels(error.error).inc()
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(error.detail)}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid_request", "detail": str(error.errors())}, status_code=422)

    # Routes that score or count: with a key they answer 401 before reading any of the body.
    needs_key = [Depends(bearer_guard(settings.api_key))]

    def serving() -> LoadedModel:
        model = holder.current
        if model is None:
            raise ServeError(503, "not_ready", f"the model is not loaded yet ({holder.last_error or 'loading'})")
        return model

    async def read_images(request: Request, max_files: int) -> list[Upload]:
        try:
            body = await asyncio.wait_for(read_body(request, settings.body_limit(max_files)), settings.timeout_s)
        except TimeoutError:
            raise ServeError(408, "request_timeout", f"the body did not arrive within {settings.timeout_s:g} s") from None
        return await uploads(request, body, max_files)

    async def in_worker(work: Callable[[], T]) -> T:
        metrics.inflight.inc()
        try:
            future = asyncio.get_running_loop().run_in_executor(request_executor(), work)
            return await asyncio.wait_for(future, settings.timeout_s)
        except TimeoutError:
            raise ServeError(503, "timeout", f"no answer within {settings.timeout_s:g} s; the server is "
                                             "overloaded or the image is too slow to process, retry later") from None
        finally:
            metrics.inflight.dec()

    def request_executor() -> ThreadPoolExecutor:
        return app.state.executor

    def count(prediction: Prediction) -> Result:
        metrics.predictions.labels(prediction.label).inc()
        return _result(prediction)

    @app.post("/v1/liveness", response_model=LivenessResponse, responses={**_ERRORS, **_KEYED},
              openapi_extra=_IMAGE_BODY, dependencies=needs_key,
              summary="Score one image (raw body or one multipart file)")
    async def liveness(request: Request) -> LivenessResponse:
        start = time.perf_counter()
        model = serving()
        images = await read_images(request, 1)
        if len(images) != 1:
            raise ServeError(400, "several_images", "send one image here, or several to /v1/liveness/batch")
        check_image(images[0], settings.max_bytes, settings.max_pixels)
        (outcome,) = await in_worker(lambda: _decode_and_predict(model, images, settings.max_pixels))
        if isinstance(outcome, ServeError):
            raise outcome
        result = count(outcome)
        return LivenessResponse(**result.model_dump(), model=ModelInfo(**model.info()),
                                latency_ms=round((time.perf_counter() - start) * 1000, 3))

    @app.post("/v1/liveness/batch", response_model=BatchResponse, responses={**_ERRORS, **_KEYED},
              openapi_extra=_BATCH_BODY, dependencies=needs_key,
              summary="Score several images (multipart files); each item says its own status")
    async def liveness_batch(request: Request) -> BatchResponse:
        start = time.perf_counter()
        model = serving()
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise ServeError(415, "unsupported_content_type", "a batch is multipart/form-data with one file part "
                                                              "per image; send single raw images to /v1/liveness")
        images = await read_images(request, settings.max_batch)
        items: list[BatchItem | None] = [None] * len(images)
        accepted: list[int] = []
        for index, image in enumerate(images):
            try:
                check_image(image, settings.max_bytes, settings.max_pixels)
                accepted.append(index)
            except ServeError as error:
                items[index] = _failed_item(index, image, error, metrics, model.trained_on)
        chosen = [images[i] for i in accepted]
        outcomes = await in_worker(lambda: _decode_and_predict(model, chosen, settings.max_pixels)) if chosen else []
        for index, outcome in zip(accepted, outcomes, strict=True):
            items[index] = (_failed_item(index, images[index], outcome, metrics, model.trained_on)
                            if isinstance(outcome, ServeError)
                            else BatchItem(index=index, filename=images[index].filename, status=200,
                                           trained_on=outcome.trained_on, result=count(outcome)))
        return BatchResponse(results=[item for item in items if item is not None], model=ModelInfo(**model.info()),
                             trained_on=model.trained_on, latency_ms=round((time.perf_counter() - start) * 1000, 3))

    @app.get("/healthz", summary="The process is up and its event loop answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="200 once a model is loaded, else 503",
             responses={503: {"model": ErrorBody, "description": "No model loaded yet"}})
    async def readyz() -> dict[str, Any]:
        model = serving()
        return {"status": "ready", "model": model.info(), "trained_on": model.trained_on, "loaded_at": model.loaded_at,
                "reloads": holder.reloads, "last_error": holder.last_error}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response, dependencies=needs_key,
             responses=_KEYED)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=metrics.content_type)

    return app


def _failed_item(index: int, image: Upload, error: ServeError, metrics: ServeMetrics, trained_on: str) -> BatchItem:
    metrics.refusals.labels(error.error).inc()
    return BatchItem(index=index, filename=image.filename, status=error.status, trained_on=trained_on,
                     error=error.error, detail=error.detail)
