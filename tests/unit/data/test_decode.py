"""Safe decoding: every bad-corpus file is rejected with its own reason; the good one decodes upright."""

from __future__ import annotations

import io
import pickle

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from liveness.data import decode
from liveness.data.decode import REJECTION_REASONS, ImageRejected, decode_bytes, load_rgb
from tests.fixtures.bad_images import (
    CORPUS,
    GOOD_NAME,
    GOOD_STORED_SHAPE,
    PATH_ONLY_REASONS,
    astronaut,
    encode,
    handmade_png,
    write_bad_image_corpus,
)

BAD = {name: reason for name, reason in CORPUS.items() if reason is not None}
BYTE_LEVEL = {name: reason for name, reason in BAD.items() if reason not in PATH_ONLY_REASONS}
TRUNCATED = [name for name, reason in BAD.items() if reason == "truncated"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_images")
    write_bad_image_corpus(folder)
    return folder


def _reason(call, *args, **kwargs) -> str:
    with pytest.raises(ImageRejected) as caught:
        call(*args, **kwargs)
    assert str(caught.value), "a rejection must say what is wrong"
    return caught.value.reason


@pytest.mark.parametrize(("name", "reason"), sorted(BAD.items()))
def test_load_rgb_rejects_each_bad_file_with_its_reason(corpus, name, reason):
    assert _reason(load_rgb, corpus / name) == reason


@pytest.mark.parametrize(("name", "reason"), sorted(BYTE_LEVEL.items()))
def test_decode_bytes_gives_the_same_reason(corpus, name, reason):
    assert _reason(decode_bytes, (corpus / name).read_bytes(), source=name) == reason


def test_corpus_covers_every_rejection_reason_but_missing_file():
    assert set(REJECTION_REASONS) - set(BAD.values()) == {"missing_file"}


def test_missing_file(tmp_path):
    assert _reason(load_rgb, tmp_path / "nowhere.jpg") == "missing_file"


def test_permission_denied_is_unreadable(tmp_path, monkeypatch):
    # Tests may run as root, where chmod 000 does not stop reads; simulate the open() failure instead.
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(decode, "open", denied, raising=False)
    target = tmp_path / "locked.jpg"
    target.write_bytes(b"irrelevant")
    with pytest.raises(ImageRejected, match="Permission denied") as caught:
        load_rgb(target)
    assert caught.value.reason == "unreadable"


def test_good_jpeg_decodes_with_exif_rotation(corpus):
    image = load_rgb(corpus / GOOD_NAME)
    height, width, _ = GOOD_STORED_SHAPE
    assert image.shape == (width, height, 3) and image.dtype == np.uint8 and image.flags.writeable
    expected = np.rot90(astronaut()[:height], k=-1)  # orientation 6: rotate 90 degrees clockwise
    assert np.abs(image.astype(int) - expected).mean() < 6


def test_decode_bytes_matches_load_rgb(corpus):
    path = corpus / GOOD_NAME
    np.testing.assert_array_equal(decode_bytes(path.read_bytes()), load_rgb(path))


@pytest.mark.parametrize(
    ("image_format", "options"), [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True})]
)
def test_lossless_accepted_formats_decode_exactly(image_format, options):
    pixels = astronaut()[:40, :56]
    np.testing.assert_array_equal(decode_bytes(encode(Image.fromarray(pixels), image_format, **options)), pixels)


def test_multi_picture_jpeg_keeps_the_primary_image():
    """Camera JPEGs with an MPF index (e.g. gain maps) open as 2-frame MPO; they are stills, not animations."""
    primary = Image.fromarray(astronaut()[:64, :64])
    data = encode(primary, "MPO", save_all=True, append_images=[primary.rotate(90)], quality=95)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert np.abs(decode_bytes(data).astype(int) - astronaut()[:64, :64]).mean() < 6


def test_16_bit_tiff_is_rejected():
    """Pillow opens 16-bit RGB TIFF (and PNG) as mode RGB, silently narrowed; the header must be asked."""
    ok, data = cv2.imencode(".tiff", astronaut()[:32, :32].astype(np.uint16) * 257)
    assert ok
    assert _reason(decode_bytes, data.tobytes()) == "bit_depth_16"


@pytest.mark.parametrize("name", TRUNCATED)
def test_truncation_does_not_depend_on_pillows_global_flag(corpus, name, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as some libraries set it at import
    assert _reason(load_rgb, corpus / name) == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True, "decoding must not touch the global flag"


def test_decoding_leaves_pillows_global_flag_alone(corpus):
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    for name in TRUNCATED:
        _reason(load_rgb, corpus / name)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is before


def test_jpeg_with_trailing_bytes_after_end_marker_is_not_truncated():
    data = encode(Image.fromarray(astronaut()[:32, :32]), "JPEG") + b"vendor trailer \xff\xd8"
    assert decode_bytes(data).shape == (32, 32, 3)


def test_too_large_is_decided_from_the_header_without_decoding(corpus, monkeypatch):
    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self))
    assert _reason(load_rgb, corpus / "over_limit_header.png") == "too_large"
    assert _reason(decode_bytes, handmade_png(200, 100), max_pixels=19_999) == "too_large"
    assert loads == []


def test_max_pixels_is_inclusive():
    data = encode(Image.fromarray(astronaut()[:10, :20]), "PNG")
    assert decode_bytes(data, max_pixels=200).shape == (10, 20, 3)
    assert _reason(decode_bytes, data, max_pixels=199) == "too_large"


def test_rejection_survives_pickling():
    error = ImageRejected("truncated", "x.jpg: rejected (truncated): ...")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, str(copy)) == (error.reason, str(error))
    assert isinstance(copy, ValueError)


def test_rejection_reasons_are_snake_case_with_descriptions():
    for code, description in REJECTION_REASONS.items():
        assert code.isidentifier() and code == code.lower() and description


def test_damaged_bytes_only_ever_raise_image_rejected():
    """Flipped, cut or inserted bytes in every accepted format: an array or ImageRejected, nothing else."""
    rng = np.random.default_rng(7)
    small = Image.fromarray(astronaut()[:48, :48])
    for image_format in sorted(decode.ACCEPTED_FORMATS):
        original = encode(small, image_format)
        for _ in range(40):
            damaged = bytearray(original)
            position = int(rng.integers(len(damaged)))
            damaged[position : position + int(rng.integers(1, 4))] = rng.bytes(int(rng.integers(0, 4)))
            try:
                decode_bytes(bytes(damaged[: int(rng.integers(len(damaged) // 2, len(damaged) + 1))]))
            except ImageRejected as error:
                assert error.reason in REJECTION_REASONS
