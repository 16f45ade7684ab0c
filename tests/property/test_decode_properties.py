"""Property: for every input, the decoder gives 8-bit RGB of the displayed size, or a reasoned rejection.

Convert, don't refuse: a complete file of any mode and format under the pixel limit always decodes. Examples
hypothesis once found failing are kept as explicit ``@example`` regression cases.
"""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from liveness.data.decode import CONVERSIONS, REJECTION_REASONS, DecodedImage, ImageRejected, decode_image
from tests.fixtures.image_strategies import ImageFile, garbage_bytes, image_files

LIMIT = 96 * 96  # a small pixel limit, so sizes around it stay cheap
CUT_REASONS = {"truncated", "corrupt", "not_an_image", "empty_file"}
PROPERTY_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _encoded(array: np.ndarray, image_format: str, mode: str = "RGB", **options) -> ImageFile:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, image_format, **options)
    height, width = array.shape[:2]
    return ImageFile(buffer.getvalue(), width, height, mode, image_format, 1, None, len(buffer.getvalue()))


def _outcome(data: bytes) -> DecodedImage | ImageRejected:
    try:
        return decode_image(data, LIMIT, source="drawn")
    except ImageRejected as error:
        return error


@PROPERTY_SETTINGS
@given(image_files(max_pixels=LIMIT, max_side=2000))
# Regression cases: a 1 px wide strip, and a 100:1 GIF (once refused as unsupported_format).
@example(_encoded(np.zeros((100, 1, 3), np.uint8), "PNG"))
@example(_encoded(np.zeros((1, 100, 3), np.uint8), "GIF", "P"))
def test_every_file_decodes_or_is_rejected_with_a_reason(image: ImageFile):
    outcome = _outcome(image.data)
    if isinstance(outcome, ImageRejected):
        assert outcome.reason in REJECTION_REASONS and str(outcome)
        over_limit = image.width * image.height > LIMIT
        if over_limit and outcome.reason == "too_large":  # the header is judged first, cut or not
            return
        assert image.truncated_at is not None and outcome.reason in CUT_REASONS, (image, outcome)
        return
    assert outcome.pixels.dtype == np.uint8 and outcome.pixels.shape == (*image.displayed_size, 3), image
    assert outcome.converted == "" or outcome.converted in CONVERSIONS
    assert image.width * image.height <= LIMIT


@PROPERTY_SETTINGS
@given(garbage_bytes())
def test_garbage_is_always_a_reasoned_rejection(data: bytes):
    outcome = _outcome(data)
    assert isinstance(outcome, ImageRejected) and outcome.reason in REJECTION_REASONS


@settings(max_examples=60, deadline=None)
@given(image_files(max_pixels=LIMIT, truncation=False, max_side=300), st.data())
def test_flipped_bytes_never_raise_anything_else(image: ImageFile, data):
    damaged = bytearray(image.data)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(damaged) - 1))
        damaged[position] = data.draw(st.integers(0, 255))
    outcome = _outcome(bytes(damaged))
    if isinstance(outcome, ImageRejected):
        assert outcome.reason in REJECTION_REASONS
    else:
        assert outcome.pixels.dtype == np.uint8 and outcome.pixels.ndim == 3 and outcome.pixels.shape[2] == 3
