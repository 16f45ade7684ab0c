"""What the REST service answers: the response bodies and the OpenAPI descriptions of requests and errors."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field

from liveness.bundle import Prediction, TrainedOn
from liveness.serve.auth import UNAUTHORIZED_RESPONSE

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
    detail: str = Field("", description="For a rejected image, what happened in words (the reason's message); \"\" "
                                        "otherwise")


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


IMAGE_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                       "properties": {"image": {"type": "string", "format": "binary"}}}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}}}
BATCH_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["images"], "properties": {
        "images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Empty body, malformed multipart, several images sent to the single "
                                             "endpoint, or a body that is not the gzip/deflate stream its "
                                             "Content-Encoding says"},
    408: {"model": ErrorBody, "description": "The body did not arrive within the timeout"},
    413: {"model": ErrorBody, "description": "Too many bytes, too many images, or too many pixels (from the header)"},
    415: {"model": ErrorBody, "description": "Not an image, an animation, or a format or pixel mode that cannot be "
                                             "decoded to RGB (grayscale, palette, alpha, CMYK and 16-bit are "
                                             "converted); a Content-Encoding other than gzip or deflate"},
    422: {"model": ErrorBody, "description": "Truncated or corrupt image data"},
    503: {"model": ErrorBody, "description": "No model loaded yet, or inference timed out"},
}
KEYED_RESPONSES: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody, **UNAUTHORIZED_RESPONSE}}


def result_of(prediction: Prediction) -> Result:
    faces = 1 if prediction.face_found else (0 if prediction.label == "no_face" else None)
    score = prediction.score if math.isfinite(prediction.score) else None
    return Result(faces=faces, face_found=prediction.face_found, box=prediction.box, score=score,
                  threshold=prediction.threshold, label=prediction.label, reason=prediction.reason,
                  trained_on=prediction.trained_on, converted=prediction.converted, detail=prediction.detail)
