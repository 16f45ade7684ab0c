"""Safe image decoding: an 8-bit RGB array, or ``ImageRejected`` with a stable reason code.

Curation decodes many thousands of files from third-party databases and must go on past any bad one, so every
failure becomes ``ImageRejected`` (a ``ValueError``) whose ``reason`` is a key of ``REJECTION_REASONS``; the
manifest records the code and the run continues. Checks run cheapest first: file access, then the header
(size, frames, format, pixel mode) before any pixel is decoded, then container completeness, then a full decode.

Accepted formats are JPEG (including camera JPEGs that Pillow opens as MPO), PNG, BMP, WEBP and TIFF; anything
else Pillow recognises (GIF, ICO, PPM, ...) is ``unsupported_format``. Where two codes apply, the one nearer
the root cause wins: an animated GIF is ``animated`` (frames are checked before the format), 16-bit grayscale is
``bit_depth_16``, grayscale with alpha (LA) is ``grayscale`` and palette with alpha (PA) is ``palette``.

Truncation is detected from the container itself (JPEG end-of-image marker, PNG IEND chunk, RIFF/BMP declared
sizes, TIFF directory offset) as well as by a full ``load()``, so it does not depend on Pillow's process-wide
``ImageFile.LOAD_TRUNCATED_IMAGES`` flag, which some libraries switch on at import and which this module never
touches. The one gap: a TIFF cut inside its pixel strips is only caught by ``load()`` while that flag is off.

Pillow's DecompressionBombWarning is turned into an error with ``warnings.catch_warnings``, which on Python 3.11
edits process-wide warning filters; decode in worker processes, not threads, where that matters.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "BMP", "WEBP", "TIFF"})
# Camera JPEGs with a multi-picture index (secondary views, HDR gain maps) open as MPO; we keep the primary image.
_FORMAT_ALIASES = {"MPO": "JPEG"}
_RGB_MODES = frozenset({"RGB", "RGBX"})

REJECTION_REASONS: dict[str, str] = {
    "missing_file": "the path does not exist",
    "broken_symlink": "the path is a symbolic link whose target is missing",
    "unreadable": "the path exists but cannot be read (permissions, a directory, I/O error)",
    "empty_file": "the file or upload has zero bytes",
    "not_an_image": "the bytes are not an image format Pillow recognises",
    "unsupported_format": "an image format outside JPEG, PNG, BMP, WEBP and TIFF",
    "too_large": "width x height exceeds the pixel limit (checked from the header, before decoding)",
    "animated": "more than one frame (animated GIF/PNG/WEBP, multi-page TIFF)",
    "truncated": "the image data ends early (interrupted download or copy)",
    "corrupt": "the image data is damaged and cannot be decoded",
    "bit_depth_16": "more than 8 bits per sample (16-bit PNG/TIFF)",
    "cmyk": "CMYK colour (print workflow), not camera RGB",
    "grayscale": "no colour channels (modes 1, L, LA, I, F)",
    "alpha_channel": "has an alpha channel (RGBA)",
    "palette": "palette colours (modes P, PA)",
    "unsupported_mode": "a pixel mode other than 8-bit RGB not covered by a more specific code",
}

# Pixel modes refused outright, with the reason code and what to tell the operator.
_MODE_REJECTIONS: dict[str, tuple[str, str]] = {
    "CMYK": ("cmyk", "liveness needs camera RGB; convert with the source colour profile only if it is a real capture"),
    **{
        mode: ("grayscale", "liveness needs colour (skin-tone and moire cues); leave it out of the set")
        for mode in ("1", "L", "LA", "La", "I", "F")
    },
    **{
        mode: ("alpha_channel", "an alpha channel suggests a cut-out or composite; flatten it deliberately if genuine")
        for mode in ("RGBA", "RGBa")
    },
    **{
        mode: ("palette", "palette quantisation destroys texture cues; use the original capture")
        for mode in ("P", "PA")
    },
}


class ImageRejected(ValueError):
    """An image the pipeline will not use. ``reason`` is a key of ``REJECTION_REASONS``; str() says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):
        # Keep the reason when the exception crosses a process boundary (Dask/Prefect workers pickle it).
        return type(self), (self.reason, str(self))


def load_rgb(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode the image file at ``path`` to RGB uint8 HxWx3 with EXIF orientation applied, or raise ImageRejected."""
    return _decode(_read_file(Path(path)), max_pixels, source=str(path))


def decode_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, *, source: str = "image bytes") -> np.ndarray:
    """Same as ``load_rgb`` for an in-memory image (an upload); ``source`` names it in messages."""
    return _decode(data, max_pixels, source)


def _reject(reason: str, source: str, detail: str) -> ImageRejected:
    return ImageRejected(reason, f"{source}: rejected ({reason}): {detail}")


def _read_file(path: Path) -> bytes:
    """The file's bytes; access failures become missing_file, broken_symlink or unreadable."""
    source = str(path)
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except FileNotFoundError:
        if path.is_symlink():  # open() followed the link to nothing
            detail = f"link target {os.readlink(path)!r} does not exist; fix or remove the link"
            raise _reject("broken_symlink", source, detail) from None
        raise _reject("missing_file", source, "no such file; check the path in the source listing") from None
    except IsADirectoryError:
        raise _reject("unreadable", source, "is a directory, not an image file; remove it from the listing") from None
    except OSError as error:
        detail = f"cannot be read ({error.strerror or error}); check its permissions"
        raise _reject("unreadable", source, detail) from error


def _decode(data: bytes, max_pixels: int, source: str) -> np.ndarray:
    """The single decoding path shared by files and uploads."""
    if not data:
        raise _reject("empty_file", source, "0 bytes; re-download or re-export it")
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than raises) between its own limit and twice that; treat both as too large.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                _check_header(image, data, max_pixels, source)
                if _is_truncated(data):
                    raise _truncated(source)
                image.load()
                return np.array(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        detail = f"Pillow refuses it as a possible decompression bomb ({error}); downscale it"
        raise _reject("too_large", source, detail) from error
    except Exception as error:  # Pillow plugins raise many types on malformed input; every one is a rejection
        raise _classify_failure(data, error, source) from error


def _classify_failure(data: bytes, error: Exception, source: str) -> ImageRejected:
    """Name a Pillow failure: a short container is truncated; bytes that start like no accepted format are not an
    image; anything else (including an accepted format too damaged to identify) is corrupt."""
    if _is_truncated(data) or "truncated" in str(error).lower():
        return _truncated(source)
    if isinstance(error, UnidentifiedImageError) and not _has_accepted_signature(data):
        return _reject("not_an_image", source, f"not a recognised image (starts with {data[:8]!r}); fix or drop it")
    return _reject("corrupt", source, f"cannot be decoded ({type(error).__name__}: {error}); re-fetch or re-export it")


def _truncated(source: str) -> ImageRejected:
    return _reject("truncated", source, "the image data ends early (interrupted download or copy); re-fetch it")


def _check_header(image: Image.Image, data: bytes, max_pixels: int, source: str) -> None:
    """Reject on what the header says, before any pixel data is decoded."""
    width, height = image.size
    if width * height > max_pixels:
        raise _reject(
            "too_large",
            source,
            f"{width}x{height} = {width * height:,} pixels exceeds the {max_pixels:,} limit; downscale it first",
        )
    image_format = _FORMAT_ALIASES.get(image.format, image.format)
    frames = 1 if image.format in _FORMAT_ALIASES else getattr(image, "n_frames", 1)
    if frames > 1:
        raise _reject("animated", source, f"{image.format} with {frames} frames; extract the still frame you want")
    if image_format not in ACCEPTED_FORMATS:
        raise _reject(
            "unsupported_format",
            source,
            f"{image.format} is not accepted; convert to PNG (or JPEG, BMP, WEBP, TIFF)",
        )
    _check_mode(image, data, source)


def _check_mode(image: Image.Image, data: bytes, source: str) -> None:
    """Accept only 8-bit RGB pixels; say which kind of other data this is."""
    if _bits_per_sample(image, data) > 8:
        raise _reject(
            "bit_depth_16",
            source,
            f"{image.format} with more than 8 bits per sample; liveness cues need 8-bit capture data, "
            "convert deliberately (not by silent truncation) and re-run",
        )
    if image.mode in _MODE_REJECTIONS:
        reason, advice = _MODE_REJECTIONS[image.mode]
        raise _reject(reason, source, f"pixel mode {image.mode}; {advice}")
    if image.mode not in _RGB_MODES:
        raise _reject("unsupported_mode", source, f"pixel mode {image.mode}; convert it to 8-bit RGB")


def _bits_per_sample(image: Image.Image, data: bytes) -> int:
    """Sample depth from the header. Pillow silently narrows 16-bit RGB PNG/TIFF to mode RGB, so ask the file."""
    if image.mode.startswith("I;16"):
        return 16
    if image.format == "PNG" and data[12:16] == b"IHDR":
        return data[24]  # IHDR bit depth: 8-byte signature, 8-byte chunk head, width, height, then depth
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, 8)  # BitsPerSample: one value per channel
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


# Truncation read from the container, independent of Pillow's LOAD_TRUNCATED_IMAGES flag.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # not byte stuffing, a restart marker or fill


def _jpeg_truncated(data: bytes) -> bool:
    """No end-of-image marker: walk segments by their lengths, skip entropy-coded scans by marker search."""
    position = 2  # after start-of-image
    while (marker := _JPEG_MARKER.search(data, position)) is not None:
        start = marker.start()
        if data[start + 1] == 0xD9:
            return False
        position = start + 2 + int.from_bytes(data[start + 2 : start + 4], "big")
    return True


def _png_truncated(data: bytes) -> bool:
    """No IEND chunk reached by walking the chunk lengths."""
    position = 8  # after the signature
    while position + 8 <= len(data):
        if data[position + 4 : position + 8] == b"IEND":
            return False
        position += 12 + int.from_bytes(data[position : position + 4], "big")
    return True


def _riff_truncated(data: bytes) -> bool:
    """Shorter than the RIFF (WEBP) header declares."""
    return len(data) < 8 + int.from_bytes(data[4:8], "little")


_BMP_INFO_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})  # BITMAPCOREHEADER ... BITMAPV5HEADER


def _bmp_truncated(data: bytes) -> bool:
    """Shorter than the BMP file header declares (0 means the writer left it unset)."""
    declared = int.from_bytes(data[2:6], "little")
    return 0 < declared and len(data) < declared


def _tiff_truncated(data: bytes) -> bool:
    """The first image directory lies past the end of the data."""
    byte_order = "little" if data[:2] == b"II" else "big"
    return len(data) < int.from_bytes(data[4:8], byte_order) + 2


def _is_bmp(data: bytes) -> bool:
    return data.startswith(b"BM") and int.from_bytes(data[14:18], "little") in _BMP_INFO_HEADER_SIZES


# (does the data start like this format, is its container cut short)
_SIGNATURES: tuple[tuple[Callable[[bytes], bool], Callable[[bytes], bool]], ...] = (
    (lambda data: data.startswith(b"\xff\xd8\xff"), _jpeg_truncated),
    (lambda data: data.startswith(b"\x89PNG\r\n\x1a\n"), _png_truncated),
    (lambda data: data.startswith(b"RIFF") and data[8:12] == b"WEBP", _riff_truncated),
    (_is_bmp, _bmp_truncated),
    (lambda data: data[:4] in (b"II*\x00", b"MM\x00*"), _tiff_truncated),
)


def _has_accepted_signature(data: bytes) -> bool:
    return any(matches(data) for matches, _ in _SIGNATURES)


def _is_truncated(data: bytes) -> bool:
    """True when the bytes start like an accepted format but its container ends early."""
    return any(matches(data) and truncated(data) for matches, truncated in _SIGNATURES)
