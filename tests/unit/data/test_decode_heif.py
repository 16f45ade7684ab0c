"""HEIC/HEIF, phones' default photo format, is decoded (pillow-heif) rather than refused as not_an_image, with
the same header, frame and truncation checks as every other format."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from liveness.data.decode import ImageRejected, decode_image
from tests.fixtures.bad_images import astronaut

FACE = Image.fromarray(astronaut()).resize((160, 160))


def _heic(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "HEIF", quality=95, **options)
    return buffer.getvalue()


def _reason(data: bytes, **kwargs) -> str:
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, **kwargs)
    return caught.value.reason


def test_a_heic_photo_decodes_to_the_picture():
    data = _heic(FACE)
    assert data[4:12] == b"ftypheic"
    decoded = decode_image(data)
    assert (decoded.format, decoded.converted, decoded.pixels.shape) == ("HEIF", "", (160, 160, 3))
    # lossy, and chroma is subsampled: close on average, not sample for sample
    assert np.abs(decoded.pixels.astype(int) - np.asarray(FACE)).mean() < 4


def test_heic_with_alpha_is_composited_and_says_so():
    assert decode_image(_heic(FACE.convert("RGBA"))).converted == "rgba->rgb"


def test_heic_orientation_is_applied_once():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    wide = FACE.crop((0, 0, 160, 100))
    decoded = decode_image(_heic(wide, exif=exif.tobytes()))
    assert decoded.pixels.shape == (160, 100, 3)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_a_cut_heic_is_truncated(keep):
    data = _heic(FACE)
    assert _reason(data[: int(len(data) * keep)]) == "truncated"


def test_a_few_trailing_bytes_are_not_truncation():
    assert decode_image(_heic(FACE) + b"\x00" * 5).format == "HEIF"


@pytest.mark.parametrize("trailer", [
    b"hello world\n" * 40,  # text whose first word would read as a 1.7 GB box
    b"\x00\x00\x00\x18ftypmp42" + b"\x11" * 5000,  # a video appended after the image, as motion photos do
    b"\x00\x00\x00\x10free" + b"\x00" * 8,  # a whole padding box
], ids=["text", "appended_video", "free_box"])
def test_data_after_the_image_is_not_truncation(trailer):
    assert decode_image(_heic(FACE) + trailer).pixels.shape == (160, 160, 3)


def test_a_known_box_cut_after_the_image_is_truncation():
    assert _reason(_heic(FACE) + b"\x00\x00\x01\x00mdat" + b"\x00" * 8) == "truncated"


def test_the_pixel_limit_applies():
    assert _reason(_heic(FACE), max_pixels=160 * 160 - 1) == "too_large"


def test_a_heic_sequence_is_refused_as_animated():
    buffer = io.BytesIO()
    FACE.save(buffer, "HEIF", save_all=True, append_images=[FACE.rotate(90)])
    assert _reason(buffer.getvalue()) == "animated"


def test_the_predictor_scores_a_heic_upload(tmp_path):
    from liveness.bundle import Predictor
    from tests.fixtures.bundles import make_model_dir

    (row,) = Predictor(make_model_dir(tmp_path / "bundle")).predict([_heic(FACE)])
    assert row.face_found and row.label in ("live", "spoof")
