"""What a request's worker thread does: decode each image, then score them in one call, one image never costing the
others their answers."""

from __future__ import annotations

import logging
from dataclasses import replace

from liveness.bundle import Prediction
from liveness.data.decode import DecodedImage, ImageRejected, decode_image
from liveness.serve.limits import ServeError, Upload, rejection
from liveness.serve.model import LoadedModel

log = logging.getLogger("liveness.serve")


def decode_and_predict(model: LoadedModel, images: list[Upload], max_pixels: int,
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
            predictions = [predict_one(model, images[index].filename, item) for index, item in decoded.items()]
        for (index, item), prediction in zip(decoded.items(), predictions, strict=True):
            outcomes[index] = (replace(prediction, converted=item.converted)
                               if isinstance(prediction, Prediction) else prediction)
    return outcomes  # type: ignore[return-value]


def predict_one(model: LoadedModel, filename: str, item: DecodedImage) -> Prediction | ServeError:
    try:
        (prediction,) = model.predictor.predict([item.pixels])
        return prediction
    except Exception as error:  # noqa: BLE001 - a 4xx for this image, never a 500 for the request
        log.exception("scoring %s failed", filename)
        return ServeError(422, "processing_failed", f"{filename}: the image decoded but could not be scored "
                                                    f"({type(error).__name__}); report it with the file")
