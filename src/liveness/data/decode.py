"""Safe image decoding: 8-bit RGB pixels and what was converted, or ``ImageRejected`` with a stable reason code.

Curation decodes many thousands of files from third-party databases and must go on past any bad one, so every
failure becomes ``ImageRejected`` (a ``ValueError``) whose ``reason`` is a key of ``REJECTION_REASONS``; the
manifest records the code and the run continues. Checks run cheapest first: file access, then the header
(size, frames) before any pixel is decoded, then container completeness, then a full decode.

Convert, don't refuse: any still raster image Pillow decodes (JPEG, PNG, WEBP, BMP, TIFF, GIF, ICO, PPM, ...)
becomes 8-bit RGB, as OpenCV-based tools would decode it, and ``DecodedImage.converted`` says how
(``CONVERSIONS``): grayscale is replicated, palettes are expanded, alpha is composited on neutral grey, CMYK goes
through its embedded ICC profile where it has one, and 16-bit samples are scaled to 8 bits. Only what cannot be
decoded, what is over the pixel limit, and animations (more than one frame) are refused.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from liveness.config import DEFAULT_MAX_PIXELS

# Formats Pillow can identify but not decode here (they need Ghostscript or a Windows handler).
UNDECODABLE_FORMATS = frozenset({"EPS", "WMF", "EMF", "PDF"})
# Camera JPEGs with a multi-picture index (secondary views, HDR gain maps) open as MPO; we keep the primary image.
_SINGLE_IMAGE_CONTAINERS = frozenset({"MPO"})
# Grey that transparent pixels are composited on: neutral for colour cues, and far from padding's black.
ALPHA_BACKGROUND = (128, 128, 128)

REJECTION_REASONS: dict[str, str] = {
    "missing_file": "the path does not exist",
    "broken_symlink": "the path is a symbolic link whose target is missing",
    "unreadable": "the path exists but cannot be read (permissions, a directory, I/O error)",
    "empty_file": "the file or upload has zero bytes",
    "not_an_image": "the bytes are not an image format Pillow recognises",
    "unsupported_format": "an image format Pillow recognises but cannot decode here (EPS, WMF, EMF, PDF)",
    "too_large": "width x height exceeds the pixel limit (checked from the header, before decoding)",
    "animated": "more than one frame (animated GIF/PNG/WEBP, multi-page TIFF)",
    "truncated": "the image data ends early (interrupted download or copy)",
    "corrupt": "the image data is damaged and cannot be decoded",
    "unsupported_mode": "a pixel mode that cannot be converted to 8-bit RGB",
}

# ``DecodedImage.converted`` values: what was done to reach 8-bit RGB ("" when the file already was).
CONVERSIONS: dict[str, str] = {
    "1->rgb": "1-bit black and white, replicated to three channels",
    "l->rgb": "8-bit grayscale, replicated to three channels",
    "la->rgb": "grayscale with alpha, composited on neutral grey and replicated",
    "p->rgb": "palette colours expanded (transparent entries composited on neutral grey)",
    "pa->rgb": "palette with alpha, expanded and composited on neutral grey",
    "rgba->rgb": "alpha channel composited on neutral grey",
    "cmyk->rgb(icc)": "CMYK converted to sRGB with the file's embedded ICC profile",
    "cmyk->rgb": "CMYK converted with Pillow's naive formula (the file has no usable ICC profile)",
    "i;16->rgb": "16-bit grayscale scaled to 8 bits and replicated",
    "i->rgb": "32-bit integer grayscale scaled to 8 bits and replicated",
    "f->rgb": "floating-point grayscale scaled to 8 bits and replicated",
    "rgb16->rgb": "16-bit colour scaled to 8 bits",
    "rgba16->rgb": "16-bit colour with alpha scaled to 8 bits and composited on neutral grey",
    "ycbcr->rgb": "YCbCr converted to RGB",
    "lab->rgb": "CIE L*a*b* converted to RGB",
    "hsv->rgb": "HSV converted to RGB",
}


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for detection: uint8 RGB pixels, EXIF orientation applied, and how it got there."""

    pixels: np.ndarray  # uint8 (H, W, 3)
    converted: str  # a key of CONVERSIONS, or "" when the file was 8-bit RGB
    format: str  # what Pillow identified, e.g. "PNG"


class ImageRejected(ValueError):
    """An image the pipeline will not use. ``reason`` is a key of ``REJECTION_REASONS``; str() says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):
        # Keep the reason when the exception crosses a process boundary (Dask/Prefect workers pickle it).
        return type(self), (self.reason, str(self))


def load_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode the image file at ``path`` to 8-bit RGB with EXIF orientation applied, or raise ImageRejected."""
    return _decode(_read_file(Path(path)), max_pixels, source=str(path))


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, *, source: str = "image bytes") -> DecodedImage:
    """Same as ``load_image`` for an in-memory image (an upload); ``source`` names it in messages."""
    return _decode(data, max_pixels, source)


def load_rgb(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``load_image``'s pixels: RGB uint8 HxWx3."""
    return load_image(path, max_pixels).pixels


def decode_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, *, source: str = "image bytes") -> np.ndarray:
    """``decode_image``'s pixels: RGB uint8 HxWx3."""
    return decode_image(data, max_pixels, source=source).pixels


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
    except (OSError, ValueError) as error:  # ValueError: a path with a NUL byte
        detail = f"cannot be read ({getattr(error, 'strerror', None) or error}); check its permissions"
        raise _reject("unreadable", source, detail) from error


def _decode(data: bytes, max_pixels: int, source: str) -> DecodedImage:
    """The single decoding path shared by files and uploads."""
    if not data:
        raise _reject("empty_file", source, "0 bytes; re-download or re-export it")
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than raises) between its own limit and twice that; treat both as too large.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # Pillow's "Corrupt EXIF data": the pixels still decode
            with Image.open(io.BytesIO(data)) as image:
                _check_header(image, max_pixels, source)
                if _is_truncated(data):
                    raise _truncated(source)
                image.load()
                image_format = str(image.format or "")
                bits = _bits_per_sample(image, data)
                oriented = _oriented(image)
                pixels, converted = to_rgb8(oriented, bits, source)
                return DecodedImage(pixels, converted, image_format)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        detail = f"Pillow refuses it as a possible decompression bomb ({error}); downscale it"
        raise _reject("too_large", source, detail) from error
    except Exception as error:  # Pillow plugins raise many types on malformed input; every one is a rejection
        raise _classify_failure(data, error, source) from error


def _oriented(image: Image.Image) -> Image.Image:
    """EXIF orientation applied; a damaged EXIF block leaves the image as stored rather than refusing it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's "Corrupt EXIF data": we fall back below
            return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - the orientation tag is advisory
        return image


def _classify_failure(data: bytes, error: Exception, source: str) -> ImageRejected:
    """Name a Pillow failure: a short container is truncated; bytes that start like no known format are not an
    image; anything else (including a known format too damaged to identify) is corrupt."""
    if _is_truncated(data) or "truncated" in str(error).lower():
        return _truncated(source)
    if isinstance(error, UnidentifiedImageError) and not _has_known_signature(data):
        return _reject("not_an_image", source, f"not a recognised image (starts with {data[:8]!r}); fix or drop it")
    return _reject("corrupt", source, f"cannot be decoded ({type(error).__name__}: {error}); re-fetch or re-export it")


def _truncated(source: str) -> ImageRejected:
    return _reject("truncated", source, "the image data ends early (interrupted download or copy); re-fetch it")


def _check_header(image: Image.Image, max_pixels: int, source: str) -> None:
    """Reject on what the header says, before any pixel data is decoded."""
    width, height = image.size
    if width * height > max_pixels:
        raise _reject(
            "too_large",
            source,
            f"{width}x{height} = {width * height:,} pixels exceeds the {max_pixels:,} limit; downscale it first",
        )
    if width < 1 or height < 1:
        raise _reject("corrupt", source, f"the header says {width}x{height} pixels; re-export it")
    if image.format in UNDECODABLE_FORMATS:
        raise _reject("unsupported_format", source,
                      f"{image.format} needs a renderer this service does not run; export it to PNG or JPEG")
    frames = 1 if image.format in _SINGLE_IMAGE_CONTAINERS else getattr(image, "n_frames", 1)
    if frames > 1:
        raise _reject("animated", source, f"{image.format} with {frames} frames; extract the still frame you want")


def to_rgb8(image: Image.Image, bits: int = 8, source: str = "image") -> tuple[np.ndarray, str]:
    """(uint8 HxWx3 pixels, conversion code) for a loaded Pillow image of any mode; ``bits`` is the file's sample
    depth (Pillow reads 16-bit colour PNG/TIFF as 8-bit modes, so the caller asks the file)."""
    mode = image.mode
    try:
        if mode in ("RGB", "RGBX"):
            return _array(image.convert("RGB") if mode == "RGBX" else image), "rgb16->rgb" if bits > 8 else ""
        if mode in ("RGBA", "RGBa"):
            return _composited(image.convert("RGBA")), "rgba16->rgb" if bits > 8 else "rgba->rgb"
        if mode in ("1", "L"):
            return _grey(np.asarray(image.convert("L"))), "1->rgb" if mode == "1" else "l->rgb"
        if mode in ("LA", "La"):
            return _composited(image.convert("RGBA")), "la->rgb"
        if mode in ("P", "PA"):
            has_alpha = mode == "PA" or "transparency" in image.info
            expanded = _composited(image.convert("RGBA")) if has_alpha else _array(image.convert("RGB"))
            return expanded, "pa->rgb" if mode == "PA" else "p->rgb"
        if mode == "CMYK":
            return _from_cmyk(image)
        if mode.startswith("I;16"):
            return _grey(_scaled(np.asarray(image).astype(np.float64), 16)), "i;16->rgb"
        if mode == "I":
            # 32-bit containers usually hold 8- or 16-bit data: take the smallest depth that holds the values.
            values = np.clip(np.asarray(image).astype(np.float64), 0, None)
            peak = values.max(initial=0)
            return _grey(_scaled(values, 8 if peak <= 255 else 16 if peak <= 65535 else 32)), "i->rgb"
        if mode == "F":
            values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            unit = values.max(initial=0.0) <= 1.0  # floats in [0, 1] (scientific TIFF), else 0-255
            return _grey(np.clip(np.rint(values * (255.0 if unit else 1.0)), 0, 255).astype(np.uint8)), "f->rgb"
        if mode in ("YCbCr", "LAB", "HSV"):
            return _array(image.convert("RGB")), f"{mode.lower()}->rgb"
        converted = image.convert("RGB")  # modes added by future Pillow versions
    except (ValueError, OSError, TypeError) as error:
        raise _reject("unsupported_mode", source, f"pixel mode {mode} could not be converted to RGB ({error})") from error
    return _array(converted), f"{mode.lower()}->rgb"


def _array(image: Image.Image) -> np.ndarray:
    return np.array(image, dtype=np.uint8)  # a writeable copy, detached from Pillow's buffer


def _grey(channel: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(channel.astype(np.uint8)[..., None], 3, axis=2))


def _scaled(values: np.ndarray, bits: int) -> np.ndarray:
    """Samples of ``bits`` bits to 8 (rounded), as OpenCV's 16-to-8-bit conversion would."""
    top = float(2 ** bits - 1)
    return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)


def _composited(rgba: Image.Image) -> np.ndarray:
    """Alpha-blend over ALPHA_BACKGROUND, in integers: out = (c * a + g * (255 - a) + 127) // 255."""
    pixels = np.asarray(rgba, dtype=np.uint32)
    alpha = pixels[..., 3:4]
    background = np.array(ALPHA_BACKGROUND, np.uint32)
    blended = (pixels[..., :3] * alpha + background * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(blended.astype(np.uint8))


def _from_cmyk(image: Image.Image) -> tuple[np.ndarray, str]:
    """CMYK to sRGB through the embedded ICC profile when there is one, else Pillow's naive conversion."""
    profile = image.info.get("icc_profile")
    if profile:
        try:
            from PIL import ImageCms

            converted = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                                  ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return _array(converted), "cmyk->rgb(icc)"
        except Exception:  # noqa: BLE001 - a damaged or non-CMYK profile: fall back rather than refuse
            pass
    return _array(image.convert("RGB")), "cmyk->rgb"


def _bits_per_sample(image: Image.Image, data: bytes) -> int:
    """Sample depth from the header. Pillow silently narrows 16-bit RGB PNG/TIFF to mode RGB, so ask the file."""
    if image.mode.startswith("I;16"):
        return 16
    if image.format == "PNG" and data[12:16] == b"IHDR":
        return data[24]  # IHDR bit depth: 8-byte signature, 8-byte chunk head, width, height, then depth
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, 8)  # BitsPerSample: one value per channel
        try:
            return int(max(bits)) if isinstance(bits, tuple) else int(bits)
        except (TypeError, ValueError):
            return 8
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


def _gif_sub_blocks_end(data: bytes, position: int) -> int:
    """Where a chain of GIF data sub-blocks (size byte, bytes; a 0 size ends it) ends, or -1 when cut short."""
    while position < len(data):
        size = data[position]
        if size == 0:
            return position + 1
        position += 1 + size
    return -1


def _gif_truncated(data: bytes) -> bool:
    """The block walk from the header runs out of data before the trailer (0x3B)."""
    if len(data) < 13:
        return True
    position = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # global colour table
    while position < len(data):
        block = data[position]
        if block == 0x3B:
            return False
        if block == 0x21:  # extension: label, then sub-blocks
            position = _gif_sub_blocks_end(data, position + 2)
        elif block == 0x2C:  # image: 9-byte descriptor, optional local table, LZW code size, sub-blocks
            if position + 10 > len(data):
                return True
            packed = data[position + 9]
            position += 10 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
            position = _gif_sub_blocks_end(data, position + 1)
        else:
            return False  # not a block we know: damage, which load() reports as corrupt
        if position < 0:
            return True
    return True


def _is_bmp(data: bytes) -> bool:
    return data.startswith(b"BM") and int.from_bytes(data[14:18], "little") in _BMP_INFO_HEADER_SIZES


# (does the data start like this format, is its container cut short)
_SIGNATURES: tuple[tuple[Callable[[bytes], bool], Callable[[bytes], bool]], ...] = (
    (lambda data: data.startswith(b"\xff\xd8\xff"), _jpeg_truncated),
    (lambda data: data.startswith(b"\x89PNG\r\n\x1a\n"), _png_truncated),
    (lambda data: data.startswith(b"RIFF") and data[8:12] == b"WEBP", _riff_truncated),
    (_is_bmp, _bmp_truncated),
    (lambda data: data[:4] in (b"II*\x00", b"MM\x00*"), _tiff_truncated),
    (lambda data: data[:6] in (b"GIF87a", b"GIF89a"), _gif_truncated),
)


def _has_known_signature(data: bytes) -> bool:
    return any(matches(data) for matches, _ in _SIGNATURES)


def _is_truncated(data: bytes) -> bool:
    """True when the bytes start like an accepted format but its container ends early."""
    return any(matches(data) and truncated(data) for matches, truncated in _SIGNATURES)
