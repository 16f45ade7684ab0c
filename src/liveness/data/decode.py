"""Safe image decoding: 8-bit RGB pixels and what was converted, or ``ImageRejected`` with a stable reason code.

Curation decodes many thousands of files from third-party databases and must go on past any bad one, so every
failure becomes ``ImageRejected`` (a ``ValueError``) whose ``reason`` is a key of ``REJECTION_REASONS``; the
manifest records the code and the run continues. Checks run cheapest first: file access, then the header
(size, frames) before any pixel is decoded, then container completeness, then a full decode.

Convert, don't refuse: any still raster image Pillow decodes (JPEG, PNG, WEBP, BMP, TIFF, GIF, ICO, PPM, AVIF,
and HEIC/HEIF through pillow-heif, ...)
becomes 8-bit RGB, as OpenCV-based tools would decode it, and ``DecodedImage.converted`` says how
(``CONVERSIONS``): grayscale is replicated, palettes are expanded, alpha is composited on neutral grey, CMYK goes
through its embedded ICC profile where it has one, and 16-bit samples are scaled to 8 bits. Only what cannot be
decoded, what is over the pixel limit, and animations (more than one frame) are refused. What Pillow cannot
open but OpenCV decodes (floating-point and grey-alpha TIFF, PFM, Radiance HDR) goes through OpenCV after the
same header checks, read by this module (``_opencv_header``).

Truncation is detected from the container itself (JPEG end-of-image marker, PNG IEND chunk, RIFF/BMP declared
sizes, TIFF directory offset, HEIF/AVIF box sizes) as well as by a full ``load()``, so it does not depend on
Pillow's process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES`` flag, which some libraries switch on at import and
which this module never touches. The one gap: a TIFF cut inside its pixel strips is only caught by ``load()``
while that flag is off.

Pillow's DecompressionBombWarning is turned into an error with ``warnings.catch_warnings``, which on Python 3.11
edits process-wide warning filters; decode in worker processes, not threads, where that matters.
"""

from __future__ import annotations

import io
import os
import re
import stat
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from liveness.config import DEFAULT_MAX_PIXELS

DEFAULT_MAX_FILE_BYTES = 1 << 30  # one image file; a 40 MP float RGBA TIFF, the largest real case, is 640 MB

# HEIC/HEIF (phone cameras' default photo format) through libheif, as one more Pillow format; the checks below
# (pixel limit from the header, frames, truncation) apply to it as to every other.
pillow_heif.register_heif_opener()

# Formats Pillow can identify but not decode here (they need Ghostscript or a Windows handler).
UNDECODABLE_FORMATS = frozenset({"EPS", "WMF", "EMF", "PDF"})
# Camera JPEGs with a multi-picture index (secondary views, HDR gain maps) open as MPO; we keep the primary image.
_SINGLE_IMAGE_CONTAINERS = frozenset({"MPO"})
# Grey that transparent pixels are composited on: neutral for colour cues, and far from padding's black.
ALPHA_BACKGROUND = (128, 128, 128)

REJECTION_REASONS: dict[str, str] = {
    "missing_file": "the path does not exist",
    "broken_symlink": "the path is a symbolic link whose target is missing",
    "unreadable": "the path exists but cannot be read (permissions, a directory, a device, I/O error)",
    "empty_file": "the file or upload has zero bytes",
    "not_an_image": "the bytes are not an image format Pillow (or, for float rasters, OpenCV) recognises",
    "unsupported_format": "an image format Pillow recognises but cannot decode here (EPS, WMF, EMF, PDF)",
    "too_large": "width x height exceeds the pixel limit (checked from the header, before decoding), or a file "
                 "exceeds the byte limit",
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
    # decoded by OpenCV (Pillow cannot): float and many-channel TIFF, PFM, Radiance HDR
    "laf->rgb": "floating-point grayscale with alpha, scaled to 8 bits and composited on neutral grey",
    "rgbf->rgb": "floating-point colour scaled to 8 bits (values in [0, 1] times 255, others clipped to 0-255)",
    "rgbaf->rgb": "floating-point colour with alpha, scaled to 8 bits and composited on neutral grey",
    "la16->rgb": "16-bit grayscale with alpha scaled to 8 bits and composited on neutral grey",
    "rgb32->rgb": "32-bit integer colour scaled to 8 bits",
    "rgba32->rgb": "32-bit integer colour with alpha scaled to 8 bits and composited on neutral grey",
    "la32->rgb": "32-bit integer grayscale with alpha scaled to 8 bits and composited on neutral grey",
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

    @property
    def what(self) -> str:
        """The message without its "<source>: rejected (<reason>): " prefix, for rows that name both already."""
        return str(self).partition(f"rejected ({self.reason}): ")[2] or str(self)


def load_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> DecodedImage:
    """Decode the image file at ``path`` to 8-bit RGB with EXIF orientation applied, or raise ImageRejected."""
    return _decode(read_image_file(path, max_bytes), max_pixels, source=str(path))


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


PIPE_IDLE_S = 10.0  # a pipe that sends nothing for this long is refused as unreadable
_SPECIAL_FILES = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_image_file(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of the image file at ``path``, or ``ImageRejected`` (missing_file, broken_symlink, unreadable,
    empty_file, too_large).

    Opened without blocking, so that a named pipe (FIFO) with no writer cannot hang a run; regular files are
    read up to ``max_bytes``, pipes until their writer closes them (``cat x.jpg | liveness predict
    /dev/stdin``), and devices and sockets are refused rather than read."""
    path, source = Path(path), str(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        if path.is_symlink():  # open() followed the link to nothing
            detail = f"link target {os.readlink(path)!r} does not exist; fix or remove the link"
            raise _reject("broken_symlink", source, detail) from None
        raise _reject("missing_file", source, "no such file; check the path in the source listing") from None
    except (OSError, ValueError) as error:  # ValueError: a path with a NUL byte
        try:
            mode = os.stat(path).st_mode  # a socket cannot even be opened; Windows refuses a folder
        except (OSError, ValueError):
            mode = 0
        detail = (_not_a_file(path, mode) if mode and not stat.S_ISREG(mode) else
                  f"cannot be read ({getattr(error, 'strerror', None) or error}); check its permissions")
        raise _reject("unreadable", source, detail) from error
    try:
        status = os.fstat(descriptor)
        if stat.S_ISFIFO(status.st_mode):
            return _read_pipe(descriptor, max_bytes, source)
        if not stat.S_ISREG(status.st_mode):
            raise _reject("unreadable", source, _not_a_file(path, status.st_mode))
        if status.st_size > max_bytes:
            raise _too_many_bytes(source, status.st_size, max_bytes)
        os.set_blocking(descriptor, True)
        with os.fdopen(descriptor, "rb", closefd=False) as stream:
            data = stream.read(max_bytes + 1)
        if len(data) > max_bytes:  # it grew while being read
            raise _too_many_bytes(source, len(data), max_bytes)
        return data
    except OSError as error:
        detail = f"cannot be read ({getattr(error, 'strerror', None) or error}); check the file and its disk"
        raise _reject("unreadable", source, detail) from error
    finally:
        os.close(descriptor)


def _not_a_file(path: Path, mode: int) -> str:
    """Why a path that is not a regular file has no image: a folder that cannot be listed says so (a folder
    search hands those on, so that their files are not lost without a word), anything else what it is."""
    if stat.S_ISDIR(mode):
        try:
            with os.scandir(path):
                pass
        except OSError as error:
            return f"is a folder that cannot be listed ({error.strerror or error}); check its permissions"
    return f"is {_kind(mode)}, not an image file; pass the image file itself"


def _kind(mode: int) -> str:
    """What a file that is not a regular file is, in words; "" for a regular file."""
    if stat.S_ISREG(mode):
        return ""
    return next((kind for is_kind, kind in _SPECIAL_FILES if is_kind(mode)), "not a regular file")


def _read_pipe(descriptor: int, max_bytes: int, source: str) -> bytes:
    """All a pipe sends until its writer closes it; 0 bytes from a named pipe nobody has opened for writing."""
    import select

    chunks, total = [], 0
    while True:
        try:
            chunk = os.read(descriptor, 1 << 20)
        except BlockingIOError:  # a writer is there but has sent nothing yet
            if not select.select([descriptor], [], [], PIPE_IDLE_S)[0]:
                raise _reject("unreadable", source, f"a pipe that sent nothing for {PIPE_IDLE_S:g} s; "
                                                    "check what writes to it") from None
            continue
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise _too_many_bytes(source, total, max_bytes)
        chunks.append(chunk)
    if not total:
        raise _reject("empty_file", source, "a named pipe (FIFO) that nobody wrote to; write the image into it, "
                                            "or pass the image file itself")
    return b"".join(chunks)


def _too_many_bytes(source: str, size: int, max_bytes: int) -> ImageRejected:
    return _reject("too_large", source, f"{size} bytes, over the {max_bytes} byte limit for one file; "
                                        "is this really one image?")


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
    except UnidentifiedImageError as error:
        if (header := _opencv_header(data)) is not None:
            return _decode_with_opencv(data, header, max_pixels, source)
        raise _classify_failure(data, error, source) from error
    except Exception as error:  # Pillow plugins raise many types on malformed input; every one is a rejection
        raise _classify_failure(data, error, source) from error


OPENCV_SIGNATURES = (b"II*\x00", b"MM\x00*", b"PF\n", b"Pf\n", b"#?RADIANCE", b"#?RGBE")  # see _opencv_header


@dataclass(frozen=True)
class _RasterHeader:
    """What a header says of a raster that Pillow cannot open but OpenCV decodes."""

    format: str
    width: int
    height: int
    frames: int = 1
    orientation: int = 1  # TIFF Orientation, as EXIF's: OpenCV applies it, 5-8 swap width and height
    data_end: int = 0  # the byte just past the pixel data the header points at (0: unknown)


def _opencv_header(data: bytes) -> _RasterHeader | None:
    """The header of a floating-point or many-channel TIFF, a PFM or a Radiance HDR file (rasters OpenCV
    decodes and Pillow does not), or None when the data is none of these or its header is unreadable."""
    try:
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_header(data)
        if data[:3] in (b"PF\n", b"Pf\n"):  # Portable Float Map: PF (colour) or Pf (grey), width height, scale
            size_line, scale_line, _ = data[3:128].split(b"\n", 2)
            width, height = (int(v) for v in size_line.split())
            float(scale_line)
            pixels_start = 3 + len(size_line) + len(scale_line) + 2
            return _RasterHeader("PFM", width, height,
                                 data_end=pixels_start + width * height * (3 if data[1:2] == b"F" else 1) * 4)
        if data.startswith((b"#?RADIANCE", b"#?RGBE")):  # header lines, a blank line, then "-Y height +X width"
            blank = data.index(b"\n\n", 0, 8192)
            size = data[blank + 2 : blank + 66].split(b"\n", 1)[0].split()
            if len(size) == 4 and size[0] in (b"-Y", b"+Y") and size[2] in (b"+X", b"-X"):
                return _RasterHeader("HDR", int(size[3]), int(size[1]))
    except (ValueError, IndexError):
        return None
    return None


_TIFF_FIELD_BYTES = {3: 2, 4: 4}  # SHORT, LONG: the types of the size, orientation and pixel-data tags
_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_ORIENTATION = 256, 257, 274
_TIFF_DATA_TAGS = ((273, 279), (324, 325))  # (StripOffsets, StripByteCounts), (TileOffsets, TileByteCounts)
_TIFF_HEADER_TAGS = frozenset({_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_ORIENTATION,
                               *(tag for pair in _TIFF_DATA_TAGS for tag in pair)})


def _tiff_header(data: bytes) -> _RasterHeader | None:
    """Width, height, orientation, page count and where the first page's pixel data ends, from a classic TIFF's
    directories."""
    order = "little" if data[:2] == b"II" else "big"

    def number(start: int, size: int) -> int:
        return int.from_bytes(data[start : start + size], order)

    def values(entry: int) -> list[int]:
        size, count = _TIFF_FIELD_BYTES.get(number(entry + 2, 2)), number(entry + 4, 4)
        if size is None:
            return []
        start = entry + 8 if size * count <= 4 else number(entry + 8, 4)  # inline, or at an offset
        if start + size * count > len(data):
            return []
        kind = np.dtype(f"{'<' if order == 'little' else '>'}u{size}")
        return np.frombuffer(data, kind, count, start).astype(np.int64).tolist()

    offset, tags, directories, pages = number(4, 4), {}, 0, 0
    while offset and directories < 1024 and offset + 2 <= len(data):
        count = number(offset, 2)
        entries = range(offset + 2, offset + 2 + 12 * count, 12)
        if directories == 0:
            tags = {number(entry, 2): values(entry) for entry in entries if number(entry, 2) in _TIFF_HEADER_TAGS}
            pages = 1
        else:  # as _tiff_pages_besides_previews: a page marked as a reduced-resolution copy is not another image
            kind = next((values(entry) for entry in entries if number(entry, 2) == _TIFF_NEW_SUBFILE_TYPE), [0])
            pages += not (kind or [0])[0] & _TIFF_REDUCED_RESOLUTION
        directories += 1
        offset = number(offset + 2 + 12 * count, 4)
    if not tags.get(_TIFF_WIDTH) or not tags.get(_TIFF_HEIGHT):
        return None
    data_end = max((start + size for offsets, counts in _TIFF_DATA_TAGS
                    for start, size in zip(tags.get(offsets, []), tags.get(counts, []))), default=0)
    return _RasterHeader("TIFF", tags[_TIFF_WIDTH][0], tags[_TIFF_HEIGHT][0], max(pages, 1),
                         (tags.get(_TIFF_ORIENTATION) or [1])[0], data_end)


_OPENCV_QUIET = threading.Lock()  # OpenCV's log level is process-wide: one decode at a time changes it


def _decode_with_opencv(data: bytes, header: _RasterHeader, max_pixels: int, source: str) -> DecodedImage:
    """Decode with OpenCV what Pillow cannot (float and many-channel TIFF, PFM, HDR): the same checks first
    (pixel limit and frames from the header, then truncation), then 8-bit RGB as ``to_rgb8`` would make it.
    OpenCV applies a TIFF's orientation tag as Pillow applies EXIF's (tested)."""
    import cv2

    _check_size(header.width, header.height, max_pixels, source)
    _check_frames(header.frames, header.format, source)
    if _is_truncated(data) or len(data) < header.data_end:
        raise _truncated(source)
    try:
        with _OPENCV_QUIET:  # libtiff's complaints about a damaged file would clutter stderr beside our reason
            level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
            try:
                pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            finally:
                cv2.utils.logging.setLogLevel(level)
    except cv2.error as error:
        raise _reject("corrupt", source, f"cannot be decoded (OpenCV: {error}); re-fetch or re-export it") from error
    if pixels is None:
        raise _reject("corrupt", source, f"{header.format} that neither Pillow nor OpenCV decodes; re-export it")
    expected = (header.width, header.height) if header.orientation >= 5 else (header.height, header.width)
    if pixels.shape[:2] != expected:  # OpenCV applies the TIFF orientation itself
        raise _reject("corrupt", source, f"the header says {header.width}x{header.height} pixels, the data "
                                         f"{pixels.shape[1]}x{pixels.shape[0]}; re-export it")
    rgb, converted = _opencv_to_rgb8(pixels, source)
    return DecodedImage(np.ascontiguousarray(rgb), converted, header.format)


def _opencv_to_rgb8(pixels: np.ndarray, source: str) -> tuple[np.ndarray, str]:
    """OpenCV's (H, W[, C]) BGR(A) samples of any depth to uint8 RGB: floats in [0, 1] are scaled by 255 and
    others read as 0-255 (as ``to_rgb8`` reads mode F), integers are scaled from their depth, alpha is
    composited on ALPHA_BACKGROUND."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels not in (1, 2, 3, 4):
        raise _reject("unsupported_mode", source, f"{channels} channels per pixel; export it as RGB or RGBA")
    kind = pixels.dtype.kind
    if kind == "f":  # in place, in OpenCV's own precision: a large HDR costs no float64 copy
        values = np.nan_to_num(pixels.astype(np.float32, copy=False), copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        if values.max(initial=0.0) <= 1.0:
            values *= 255.0
        samples = np.clip(np.rint(values, out=values), 0, 255, out=values).astype(np.uint8)
        suffix = "f"
    elif kind in "ui":
        bits = 8 * pixels.dtype.itemsize
        samples = pixels.astype(np.uint8) if bits == 8 and kind == "u" else _scaled(
            np.clip(pixels.astype(np.float64), 0, None), bits)
        suffix = "" if bits == 8 else str(bits)
    else:
        raise _reject("unsupported_mode", source, f"samples of type {pixels.dtype}; export it as 8- or 16-bit")
    if channels == 1:  # Pillow's codes for the same grey depths
        grey_code = {"": "l->rgb", "16": "i;16->rgb", "32": "i->rgb", "f": "f->rgb"}[suffix]
        return _grey(samples if samples.ndim == 2 else samples[..., 0]), grey_code
    if channels == 2:  # grey and alpha
        rgba = np.dstack([samples[..., 0]] * 3 + [samples[..., 1]])
        return _composited(Image.fromarray(rgba, "RGBA")), f"la{suffix}->rgb"
    if channels == 3:
        return np.ascontiguousarray(samples[..., ::-1]), f"rgb{suffix}->rgb" if suffix else ""
    rgba = np.ascontiguousarray(samples[..., [2, 1, 0, 3]])
    return _composited(Image.fromarray(rgba, "RGBA")), f"rgba{suffix}->rgb"


def _oriented(image: Image.Image) -> Image.Image:
    """EXIF orientation applied, in place: the image is ours, and a copy of an upright one would cost as much as
    decoding it (0.5 of 1.1 ms for a 512x512 JPEG). A damaged EXIF block leaves the image as stored rather than
    refusing it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's "Corrupt EXIF data": we fall back below
            ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # noqa: BLE001 - the orientation tag is advisory
        pass
    return image


def _classify_failure(data: bytes, error: Exception, source: str) -> ImageRejected:
    """Name a Pillow failure: a short container is truncated; bytes that start like no known format are not an
    image; anything else (including a known format too damaged to identify) is corrupt."""
    if _is_truncated(data) or "truncated" in str(error).lower():
        return _truncated(source)
    if isinstance(error, UnidentifiedImageError) and not _has_known_signature(data):
        if video := _video_container(data):
            return _reject("not_an_image", source, f"this is a video ({video}), not a still image; send one frame, "
                                                   "or score the video with `liveness predict`, which samples frames")
        return _reject("not_an_image", source, f"not a recognised image (starts with {data[:8]!r}); fix or drop it")
    return _reject("corrupt", source, f"cannot be decoded ({type(error).__name__}: {error}); re-fetch or re-export it")


def _video_container(data: bytes) -> str:
    """The video container ``data`` starts like, or "": a video sent where a still image belongs gets a message
    that says so."""
    if data[4:8] == b"ftyp" and not _is_iso_media_image(data):
        return "MP4/MOV"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "AVI"
    if data[:4] == b"\x1aE\xdf\xa3":
        return "Matroska/WebM"
    if data[:3] == b"FLV":
        return "FLV"
    if data[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3") or data[:377:188] == b"GGG":
        return "MPEG"
    return ""


def _truncated(source: str) -> ImageRejected:
    return _reject("truncated", source, "the image data ends early (interrupted download or copy); re-fetch it")


def _check_header(image: Image.Image, max_pixels: int, source: str) -> None:
    """Reject on what the header says, before any pixel data is decoded."""
    _check_size(*image.size, max_pixels, source)
    if image.format in UNDECODABLE_FORMATS:
        raise _reject("unsupported_format", source,
                      f"{image.format} needs a renderer this service does not run; export it to PNG or JPEG")
    frames = 1 if image.format in _SINGLE_IMAGE_CONTAINERS else getattr(image, "n_frames", 1)
    if image.format == "TIFF" and 1 < frames <= _TIFF_PAGES_SCANNED:
        frames = _tiff_pages_besides_previews(image)
    _check_frames(frames, str(image.format), source)


_TIFF_PAGES_SCANNED = 64  # more pages than this is a document or a stack, whatever their kinds
_TIFF_NEW_SUBFILE_TYPE, _TIFF_REDUCED_RESOLUTION = 254, 1  # the tag, and its bit for a preview or thumbnail


def _tiff_pages_besides_previews(image: Image.Image) -> int:
    """A TIFF's first page plus those of its other pages that are not marked as a reduced-resolution copy
    (NewSubfileType bit 0: the thumbnails and previews scanners and cameras add), so that one image with its
    previews is a still image; the first page stays the one decoded."""
    pages = 1
    for index in range(1, image.n_frames):
        image.seek(index)
        pages += not int(image.tag_v2.get(_TIFF_NEW_SUBFILE_TYPE, 0) or 0) & _TIFF_REDUCED_RESOLUTION
    image.seek(0)
    return pages


def _check_size(width: int, height: int, max_pixels: int, source: str) -> None:
    """Every decoding path's first check: a real size within the pixel limit."""
    if width * height > max_pixels:
        raise _reject("too_large", source, f"{width}x{height} = {width * height:,} pixels exceeds the "
                                           f"{max_pixels:,} limit; downscale it first")
    if width < 1 or height < 1:
        raise _reject("corrupt", source, f"the header says {width}x{height} pixels; re-export it")


def _check_frames(frames: int, image_format: str, source: str) -> None:
    if frames > 1:
        raise _reject("animated", source, f"{image_format} with {frames} frames; extract the still frame you want")


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


def _iso_media_truncated(data: bytes) -> bool:
    """A top-level box of an ISO base media file (HEIF, AVIF) reaches past the end of the data. The walk stops
    at the first bytes that are not a known top-level box: data appended after the image (a phone's motion-photo
    video, padding, junk), which libheif ignores too."""
    position = 0
    while position + 8 <= len(data):
        if position and data[position + 4 : position + 8] not in _ISO_MEDIA_TOP_LEVEL_BOXES:
            return False
        size = int.from_bytes(data[position : position + 4], "big")
        if size == 1:  # 64-bit size after the type
            if position + 16 > len(data):
                return True
            size = int.from_bytes(data[position + 8 : position + 16], "big")
        elif size == 0:  # the box runs to the end
            return False
        if size < 8:
            return False  # not a box: damage, which load() reports as corrupt
        position += size
    return position > len(data)


# ISO/IEC 14496-12 and HEIF (23008-12) boxes that may sit at the top level of a still-image file; mpvd: Samsung's
# motion-photo video.
_ISO_MEDIA_TOP_LEVEL_BOXES = frozenset({b"ftyp", b"meta", b"mdat", b"moov", b"free", b"skip", b"uuid", b"wide",
                                        b"pdin", b"moof", b"mfra", b"styp", b"sidx", b"ssix", b"prft", b"emsg",
                                        b"meco", b"idat", b"mpvd"})


def _is_iso_media_image(data: bytes) -> bool:
    return data[4:8] == b"ftyp" and data[8:12] in _ISO_MEDIA_IMAGE_BRANDS


_ISO_MEDIA_IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
                                     b"avif", b"avis"})


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
    (_is_iso_media_image, _iso_media_truncated),
)


def _has_known_signature(data: bytes) -> bool:
    return any(matches(data) for matches, _ in _SIGNATURES)


def _is_truncated(data: bytes) -> bool:
    """True when the bytes start like an accepted format but its container ends early."""
    return any(matches(data) and truncated(data) for matches, truncated in _SIGNATURES)
