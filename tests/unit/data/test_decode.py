"""Safe decoding: every bad-corpus file is rejected with its own reason; every convertible one decodes to
8-bit RGB and says how; the good one decodes upright."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from liveness.data import decode
from liveness.data.decode import (
    ALPHA_BACKGROUND,
    CONVERSIONS,
    REJECTION_REASONS,
    ImageRejected,
    decode_bytes,
    decode_image,
    load_image,
    load_rgb,
    to_rgb8,
)
from tests.fixtures.bad_images import (
    CONVERTED,
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


def test_corpus_covers_every_rejection_reason_but_missing_file_and_unconvertible_modes():
    # unsupported_mode has no file Pillow both opens and cannot convert; test_unconvertible_mode covers it.
    assert set(REJECTION_REASONS) - set(BAD.values()) == {"missing_file", "unsupported_mode"}


GOOD = sorted(name for name, reason in CORPUS.items() if reason is None)


@pytest.mark.parametrize("name", GOOD)
def test_each_convertible_file_decodes_to_8_bit_rgb_and_says_how(corpus, name):
    decoded = load_image(corpus / name)
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.ndim == 3 and decoded.pixels.shape[2] == 3
    assert decoded.converted == CONVERTED[name]
    assert decoded.converted == "" or decoded.converted in CONVERSIONS
    same = decode_image((corpus / name).read_bytes(), source=name)
    np.testing.assert_array_equal(same.pixels, decoded.pixels)


def test_conversions_keep_the_picture():
    """Each conversion of the same photo stays close to it (grey ones to its luminance)."""
    photo = Image.fromarray(astronaut()).resize((64, 64))
    colour = np.asarray(photo).astype(float)
    grey = np.asarray(photo.convert("L")).astype(float)
    sixteen = np.asarray(photo.convert("L")).astype(np.uint16) * 257
    cases = {
        "l->rgb": (encode(photo.convert("L"), "PNG"), grey),
        "p->rgb": (encode(photo.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), colour),
        "rgba->rgb": (encode(photo.convert("RGBA"), "PNG"), colour),
        "cmyk->rgb": (encode(photo.convert("CMYK"), "TIFF"), colour),
        "i;16->rgb": (encode(Image.fromarray(sixteen), "PNG"), grey),
        "rgb16->rgb": (cv2.imencode(".png", np.asarray(photo)[..., ::-1].astype(np.uint16) * 257)[1].tobytes(), colour),
    }
    for code, (data, expected) in cases.items():
        decoded = decode_image(data)
        assert decoded.converted == code
        reference = expected if expected.ndim == 3 else expected[..., None]
        assert np.abs(decoded.pixels.astype(float) - reference).mean() < 12, code


def test_alpha_is_composited_on_neutral_grey():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[:, :2, 3] = 255  # left half opaque, right half fully transparent
    decoded = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert decoded.converted == "rgba->rgb"
    assert (decoded.pixels[:, :2] == (255, 0, 0)).all()
    assert (decoded.pixels[:, 2:] == ALPHA_BACKGROUND).all()


def test_16_bit_samples_scale_to_8_bits_by_rounding():
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    decoded = decode_image(encode(Image.fromarray(values), "PNG"))
    assert decoded.converted == "i;16->rgb"
    assert decoded.pixels[0, :, 0].tolist() == [0, 1, 128, 255]


def test_cmyk_goes_through_its_embedded_icc_profile(monkeypatch):
    from PIL import ImageCms

    used = []

    def through_profile(image, source, target, outputMode):  # noqa: N803 - Pillow's keyword
        used.append(outputMode)
        return image.convert("RGB")

    monkeypatch.setattr(ImageCms, "profileToProfile", through_profile)
    monkeypatch.setattr(ImageCms, "ImageCmsProfile", lambda stream: stream)
    data = encode(Image.fromarray(astronaut()[:16, :16]).convert("CMYK"), "JPEG", icc_profile=b"profile bytes")
    decoded = decode_image(data)
    assert (decoded.converted, used) == ("cmyk->rgb(icc)", ["RGB"])


def test_cmyk_with_a_profile_that_does_not_fit_falls_back_to_the_naive_conversion():
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # an RGB profile on CMYK data
    data = encode(Image.fromarray(astronaut()[:16, :16]).convert("CMYK"), "JPEG", icc_profile=srgb)
    assert decode_image(data).converted == "cmyk->rgb"


def test_unconvertible_mode():
    class Stubborn:
        mode, info = "BGR;15", {}

        def convert(self, mode):
            raise ValueError("conversion not supported")

    with pytest.raises(ImageRejected) as caught:
        to_rgb8(Stubborn(), source="odd.tiff")  # type: ignore[arg-type]
    assert caught.value.reason == "unsupported_mode" and "BGR;15" in str(caught.value)


def test_missing_file(tmp_path):
    assert _reason(load_rgb, tmp_path / "nowhere.jpg") == "missing_file"


def test_permission_denied_is_unreadable(tmp_path, monkeypatch):
    # Tests may run as root, where chmod 000 does not stop reads; simulate the open() failure instead.
    target = tmp_path / "locked.jpg"
    real_open = decode.os.open

    def denied(path, *args, **kwargs):
        if Path(path) == target:
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(decode.os, "open", denied)
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


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_every_exif_orientation_gives_what_pillows_own_transpose_gives(orientation, image_format):
    """The orientation is applied in place (no copy of an upright image); the pixels must be those of Pillow's
    copying ``exif_transpose``, for all eight orientations."""
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(astronaut()[:40, :56]), image_format, exif=exif.tobytes())
    with Image.open(io.BytesIO(data)) as stored:
        expected = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    decoded = decode.decode_image(data, 10_000, source="oriented")
    np.testing.assert_array_equal(decoded.pixels, expected)
    assert decoded.pixels.shape[:2] == ((56, 40) if orientation >= 5 else (40, 56))
    assert decoded.pixels.flags.writeable


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


def test_16_bit_rgb_tiff_is_scaled_and_says_so():
    """Pillow opens 16-bit RGB TIFF (and PNG) as mode RGB, silently narrowed; the header says it was 16-bit."""
    ok, data = cv2.imencode(".tiff", astronaut()[:32, :32].astype(np.uint16) * 257)
    assert ok
    decoded = decode_image(data.tobytes())
    assert decoded.converted == "rgb16->rgb"
    assert np.abs(decoded.pixels.astype(int) - astronaut()[:32, :32, ::-1]).max() <= 1


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


def test_what_is_the_message_without_its_source_and_reason():
    with pytest.raises(ImageRejected) as caught:
        decode_bytes(encode(Image.fromarray(astronaut()), "PNG")[:2000], source="upload.png")
    truncated = caught.value
    assert str(truncated).startswith("upload.png: rejected (truncated): ")
    assert truncated.what and "upload.png" not in truncated.what and str(truncated).endswith(truncated.what)
    assert ImageRejected("unreadable", "no prefix here").what == "no prefix here"  # other messages stay whole


def test_rejection_reasons_are_snake_case_with_descriptions():
    for code, description in REJECTION_REASONS.items():
        assert code.isidentifier() and code == code.lower() and description


def test_damaged_bytes_only_ever_raise_image_rejected():
    """Flipped, cut or inserted bytes in every accepted format: an array or ImageRejected, nothing else."""
    rng = np.random.default_rng(7)
    small = Image.fromarray(astronaut()[:48, :48])
    for image_format in ("BMP", "GIF", "JPEG", "PNG", "TIFF", "WEBP"):
        original = encode(small, image_format)
        for _ in range(40):
            damaged = bytearray(original)
            position = int(rng.integers(len(damaged)))
            damaged[position : position + int(rng.integers(1, 4))] = rng.bytes(int(rng.integers(0, 4)))
            try:
                decode_bytes(bytes(damaged[: int(rng.integers(len(damaged) // 2, len(damaged) + 1))]))
            except ImageRejected as error:
                assert error.reason in REJECTION_REASONS


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".avi", ".mkv"])
def test_a_video_sent_as_an_image_says_it_is_a_video(tmp_path, suffix):
    """A clip uploaded where a still belongs: the reason stays not_an_image, and the message says what to do."""
    from tests.fixtures.databases import write_video

    data = write_video(tmp_path / f"clip{suffix}", frames=3).read_bytes()
    with pytest.raises(ImageRejected, match="this is a video .*liveness predict") as caught:
        decode_bytes(data)
    assert caught.value.reason == "not_an_image"


def test_an_image_container_is_not_taken_for_a_video():
    with pytest.raises(ImageRejected) as caught:
        decode_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 4)  # a HEIF photo's brand, cut: not a video
    assert caught.value.reason == "truncated" and "video" not in str(caught.value)
