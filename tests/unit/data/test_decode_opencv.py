"""Rasters Pillow cannot open but OpenCV decodes (float and many-channel TIFF, PFM, Radiance HDR) are converted,
not refused as ``corrupt`` or ``not_an_image``; their header is checked first, as Pillow's is.

Found by feeding ``liveness predict`` a folder of awkward files: a 3-channel float32 TIFF (what OpenCV and
scientific tools write) was rejected as corrupt, PFM and HDR as not images.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from liveness.data.decode import CONVERSIONS, ImageRejected, decode_image

RNG = np.random.default_rng(0)
PICTURE = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)  # RGB


def _encoded(extension: str, samples: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(extension, samples)
    assert ok
    return buffer.tobytes()


def _reason(data: bytes, **kwargs) -> str:
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, **kwargs)
    return caught.value.reason


def _with_tiff_tag(data: bytes, tag: int, value: int, page: int = 0) -> bytes:
    """A little-endian TIFF with one SHORT tag set in directory ``page``: a copy of that directory, with the
    tag, appended at the end, and the pointer to it (the header's, or the previous directory's) moved there."""
    assert data[:4] == b"II*\x00"
    pointer = 4  # where the offset of the directory to change is stored
    for _ in range(page):
        offset = int.from_bytes(data[pointer : pointer + 4], "little")
        pointer = offset + 2 + 12 * int.from_bytes(data[offset : offset + 2], "little")
    offset = int.from_bytes(data[pointer : pointer + 4], "little")
    count = int.from_bytes(data[offset : offset + 2], "little")
    entries = [data[offset + 2 + 12 * i : offset + 14 + 12 * i] for i in range(count)]
    entries = [entry for entry in entries if int.from_bytes(entry[:2], "little") != tag]  # replaced, if there
    entries.append(struct.pack("<HHIHH", tag, 3, 1, value, 0))
    entries.sort(key=lambda entry: int.from_bytes(entry[:2], "little"))
    next_directory = data[offset + 2 + 12 * count : offset + 6 + 12 * count]
    directory = struct.pack("<H", len(entries)) + b"".join(entries) + next_directory
    start = len(data) + len(data) % 2
    return (data[:pointer] + struct.pack("<I", start) + data[pointer + 4 :] + b"\x00" * (len(data) % 2)
            + directory)


def test_pillow_cannot_open_these():
    import io

    from PIL import UnidentifiedImageError

    for data in (_encoded(".tiff", PICTURE[..., ::-1].astype(np.float32) / 255),
                 _encoded(".pfm", PICTURE.astype(np.float32))):
        with pytest.raises(UnidentifiedImageError):
            Image.open(io.BytesIO(data))


@pytest.mark.parametrize("scale", [1 / 255, 1.0], ids=["unit_floats", "floats_0_255"])
def test_float_rgb_tiff_decodes_to_the_picture(scale):
    decoded = decode_image(_encoded(".tiff", PICTURE[..., ::-1].astype(np.float32) * scale))
    assert (decoded.format, decoded.converted) == ("TIFF", "rgbf->rgb")
    np.testing.assert_array_equal(decoded.pixels, PICTURE)


def test_float_rgba_tiff_is_composited_and_says_so():
    alpha = np.full(PICTURE.shape[:2], 255, np.uint8)
    alpha[:, :16] = 0
    bgra = np.dstack([PICTURE[..., ::-1], alpha]).astype(np.float32) / 255
    decoded = decode_image(_encoded(".tiff", bgra))
    assert decoded.converted == "rgbaf->rgb"
    np.testing.assert_array_equal(decoded.pixels[:, 16:], PICTURE[:, 16:])
    assert (decoded.pixels[:, :16] == 128).all()  # ALPHA_BACKGROUND


def test_pfm_and_hdr_decode():
    pfm = decode_image(_encoded(".pfm", PICTURE[..., ::-1].astype(np.float32) / 255))
    assert (pfm.format, pfm.converted, pfm.pixels.shape) == ("PFM", "rgbf->rgb", PICTURE.shape)
    np.testing.assert_array_equal(pfm.pixels, PICTURE)  # PFM stores rows bottom-up; OpenCV turns them back
    hdr = decode_image(_encoded(".hdr", PICTURE[..., ::-1].astype(np.float32) / 255))
    assert (hdr.format, hdr.converted) == ("HDR", "rgbf->rgb")
    assert np.abs(hdr.pixels.astype(int) - PICTURE).max() <= 2  # RGBE keeps 8 bits of mantissa


def test_grey_float_pfm_uses_pillows_grey_code():
    decoded = decode_image(_encoded(".pfm", PICTURE[..., 0].astype(np.float32) / 255))
    assert decoded.converted == "f->rgb"
    np.testing.assert_array_equal(decoded.pixels, np.repeat(PICTURE[..., :1], 3, axis=2))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_applied_as_pillow_applies_exif(orientation):
    from PIL import ImageOps

    data = _with_tiff_tag(_encoded(".tiff", PICTURE[..., ::-1].astype(np.float32) / 255), 274, orientation)
    decoded = decode_image(data)
    expected = Image.fromarray(PICTURE)
    exif = expected.getexif()
    exif[0x0112] = orientation
    expected.info["exif"] = exif.tobytes()
    np.testing.assert_array_equal(decoded.pixels, np.asarray(ImageOps.exif_transpose(expected)))


def test_the_pixel_limit_is_read_from_the_header_before_decoding(monkeypatch):
    data = _encoded(".tiff", PICTURE[..., ::-1].astype(np.float32))
    monkeypatch.setattr(cv2, "imdecode", lambda *args: pytest.fail("decoded past the pixel limit"))
    assert _reason(data, max_pixels=24 * 32 - 1) == "too_large"
    assert _reason(_encoded(".pfm", PICTURE.astype(np.float32)), max_pixels=100) == "too_large"


def test_a_multi_page_float_tiff_is_refused_as_animated():
    pages = [PICTURE[..., ::-1].astype(np.float32), PICTURE[..., ::-1].astype(np.float32)]
    ok, buffer = cv2.imencodemulti(".tiff", pages)
    assert ok
    assert _reason(buffer.tobytes()) == "animated"


REDUCED_RESOLUTION = (254, 1)  # NewSubfileType, bit 0: a preview or thumbnail of the main image


def _two_page_tiff(first: np.ndarray, second: np.ndarray, pillow: bool) -> bytes:
    if pillow:
        buffer = io.BytesIO()
        Image.fromarray(first).save(buffer, "TIFF", save_all=True, append_images=[Image.fromarray(second)])
        return buffer.getvalue()
    ok, buffer = cv2.imencodemulti(".tiff", [first[..., ::-1].astype(np.float32) / 255,
                                              second[..., ::-1].astype(np.float32) / 255])
    assert ok
    return buffer.tobytes()


@pytest.mark.parametrize("pillow", [True, False], ids=["uint8_pillow", "float_opencv"])
def test_a_tiff_with_a_thumbnail_page_is_its_first_page(pillow):
    """Scanners and cameras add a reduced-resolution preview as a second page: one still image, not an
    animation. A second full page still is one (above)."""
    thumbnail = np.ascontiguousarray(PICTURE[::4, ::4])
    data = _with_tiff_tag(_two_page_tiff(PICTURE, thumbnail, pillow), *REDUCED_RESOLUTION, page=1)
    decoded = decode_image(data)
    assert decoded.pixels.shape == PICTURE.shape
    assert np.abs(decoded.pixels.astype(int) - PICTURE).max() <= 1
    assert _reason(_two_page_tiff(PICTURE, thumbnail, pillow)) == "animated"  # unmarked: another page
    three = _with_tiff_tag(_two_page_tiff(PICTURE, PICTURE, pillow), 254, 2, page=1)  # bit 1: a page of a document
    assert _reason(three) == "animated"


@pytest.mark.parametrize("extension", [".tiff", ".pfm"])
def test_a_cut_file_is_truncated(extension):
    data = _encoded(extension, PICTURE[..., ::-1].astype(np.float32) / 255)
    assert _reason(data[: len(data) * 2 // 3]) == "truncated"


def test_channel_counts_opencv_can_hand_back():
    """2 channels (grey and alpha) are composited; 5 or more have no RGB reading (OpenCV's TIFF reader returns
    them, its writer here does not make them, so the conversion is checked on the samples)."""
    from liveness.data.decode import _opencv_to_rgb8

    grey_alpha = np.dstack([PICTURE[..., 0], np.full(PICTURE.shape[:2], 255, np.uint8)]).astype(np.uint16) * 257
    pixels, converted = _opencv_to_rgb8(grey_alpha, "x")
    assert converted == "la16->rgb" and converted in CONVERSIONS
    np.testing.assert_array_equal(pixels, np.repeat(PICTURE[..., :1], 3, axis=2))
    with pytest.raises(ImageRejected) as caught:
        _opencv_to_rgb8(np.zeros((2, 2, 5), np.float32), "x")
    assert caught.value.reason == "unsupported_mode"
    with pytest.raises(ImageRejected):
        _opencv_to_rgb8(np.zeros((2, 2, 3), np.complex64), "x")


def test_every_code_is_documented():
    for extension, samples in ((".tiff", PICTURE.astype(np.float32)), (".pfm", PICTURE[..., 0].astype(np.float32)),
                               (".tiff", np.dstack([PICTURE, PICTURE[..., :1]]).astype(np.float32))):
        assert decode_image(_encoded(extension, samples)).converted in CONVERSIONS


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([".tiff", ".pfm", ".hdr"]), st.sampled_from([1, 3, 4]), st.integers(1, 40), st.integers(1, 40),
       st.sampled_from(["float32", "uint16", "uint8"]), st.floats(0.0, 1.0), st.data())
def test_any_such_file_decodes_or_is_a_reasoned_rejection(extension, channels, height, width, dtype, cut, data):
    if extension != ".tiff" and (dtype != "float32" or channels == 4):
        channels, dtype = (3 if extension == ".hdr" else channels if channels != 4 else 3), "float32"
    samples = RNG.random((height, width, channels)).astype(np.float32) * (255 if dtype != "float32" else 1)
    ok, buffer = cv2.imencode(extension, samples.astype(dtype).squeeze(-1) if channels == 1 else samples.astype(dtype))
    if not ok:
        return
    encoded = buffer.tobytes()
    encoded = encoded[: max(1, int(len(encoded) * cut))] if data.draw(st.booleans()) else encoded
    try:
        decoded = decode_image(encoded)
    except ImageRejected as error:
        assert error.reason in ("truncated", "corrupt", "not_an_image", "unsupported_mode")
        return
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape == (height, width, 3)
    assert decoded.converted == "" or decoded.converted in CONVERSIONS


def test_folder_discovery_takes_them_by_suffix_and_by_content(tmp_path):
    """``liveness predict <folder>`` once skipped .pfm and .hdr as "neither images nor videos"."""
    from liveness.data.inputs import find_input_files, read_inputs

    float_tiff = _encoded(".tiff", PICTURE.astype(np.float32) / 255)
    (tmp_path / "a.pfm").write_bytes(_encoded(".pfm", PICTURE.astype(np.float32) / 255))
    (tmp_path / "b.hdr").write_bytes(_encoded(".hdr", PICTURE.astype(np.float32) / 255))
    (tmp_path / "c_float_tiff_without_suffix").write_bytes(float_tiff)
    (tmp_path / "notes.txt").write_text("not an image")
    files, skipped = find_input_files([tmp_path])
    items = list(read_inputs(files, frames=1))
    assert sorted(Path(path).name for path, *_ in items) == ["a.pfm", "b.hdr", "c_float_tiff_without_suffix"]
    assert skipped == [(tmp_path, 1)]
    for _, _, data, _, _ in items:
        assert decode_image(data).converted == "rgbf->rgb"


def test_a_damaged_file_is_a_reason_not_a_libtiff_complaint(capfd):
    """libtiff, inside OpenCV, prints its errors on stderr; the row's reason says it, so stderr stays clean."""
    data = _encoded(".tiff", PICTURE.astype(np.float32) / 255)
    assert _reason(data[:-10]) == "corrupt"  # the last directory entries are cut
    assert "TIFF" not in capfd.readouterr().err
    assert cv2.utils.logging.getLogLevel() != cv2.utils.logging.LOG_LEVEL_SILENT  # restored
