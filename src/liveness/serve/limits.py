"""Request limits and input errors: every refusal is a ``ServeError`` that becomes a 4xx JSON body.

Checks run cheapest first so a hostile request costs as little as possible: the Content-Encoding, the declared
Content-Length, the bytes actually read (and, for a gzip or deflate body, inflated), the number of images, then
the pixel count from the image header (Pillow's ``open`` reads the header only), and only then a full decode in
a worker thread.
"""

from __future__ import annotations

import io
import warnings
import zlib
from dataclasses import dataclass

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from liveness.data.decode import ImageRejected

# Decoder reason -> HTTP status. Reasons not listed (not an image, animated, undecodable format or mode) are 415.
STATUS_BY_REASON: dict[str, int] = {"empty_file": 400, "too_large": 413, "truncated": 422, "corrupt": 422}
UNSUPPORTED_MEDIA = 415
_FORM_TYPES = ("application/x-www-form-urlencoded", "application/json", "text/")


class ServeError(Exception):
    """A refusal with its HTTP status, a stable ``error`` code and a human ``detail``."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail

    def __reduce__(self):  # a worker process's answer crosses back pickled
        return type(self), (self.status, self.error, self.detail)


def rejection(error: ImageRejected) -> ServeError:
    return ServeError(STATUS_BY_REASON.get(error.reason, UNSUPPORTED_MEDIA), error.reason, str(error))


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


def check_image(upload: Upload, max_bytes: int, max_pixels: int) -> None:
    """Refuse an empty or oversized upload, judging pixels by the header alone (nothing is decoded here).

    Bytes Pillow cannot even open pass through: the decoder then names what is wrong with them."""
    if not upload.data:
        raise ServeError(400, "empty_file", f"{upload.filename}: 0 bytes; send the image file's contents")
    if len(upload.data) > max_bytes:
        raise ServeError(413, "payload_too_large",
                         f"{upload.filename}: {len(upload.data):,} bytes exceeds the {max_bytes:,} byte limit")
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(upload.data)) as image:
            warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on odd tags; the decoder judges the file
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ServeError(413, "too_large", f"{upload.filename}: {error}") from None
    except Exception:  # noqa: BLE001 - not identifiable here; decode_bytes classifies it
        return
    if width * height > max_pixels:
        raise ServeError(413, "too_large", f"{upload.filename}: header says {width}x{height} = "
                                           f"{width * height:,} pixels, over the {max_pixels:,} limit; downscale it")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as the declared or received size passes ``limit``; a body sent
    with ``Content-Encoding: gzip`` or ``deflate`` is decompressed, and held to the same limit once inflated."""
    encodings = _content_encodings(request.headers.get("content-encoding", ""))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ServeError(413, "payload_too_large", f"request body of {int(declared):,} bytes exceeds {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServeError(413, "payload_too_large", f"request body exceeds {limit:,} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    for encoding in reversed(encodings):  # the last one listed was applied last
        body = _inflated(body, encoding, limit)
    return body


# zlib windows to try per encoding: HTTP's deflate is zlib-wrapped, but many clients send a raw deflate stream
_WINDOWS = {"gzip": (16 + zlib.MAX_WBITS,), "x-gzip": (16 + zlib.MAX_WBITS,),
            "deflate": (zlib.MAX_WBITS, -zlib.MAX_WBITS)}


def _content_encodings(header: str) -> list[str]:
    """The body's encodings, in the order applied; 415 for one this server cannot undo."""
    encodings = [name for name in (part.strip().lower() for part in header.split(",")) if name not in ("", "identity")]
    unknown = [encoding for encoding in encodings if encoding not in _WINDOWS]
    if unknown:
        raise ServeError(415, "unsupported_content_encoding",
                         f"Content-Encoding {', '.join(unknown)} is not supported; send the image uncompressed "
                         "(images are compressed already) or gzip it")
    return encodings


def _inflated(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decompressed, never past ``limit`` bytes (a small gzip bomb cannot fill the memory)."""
    for window in _WINDOWS[encoding]:
        inflater = zlib.decompressobj(window)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(data) > limit or inflater.unconsumed_tail:
            raise ServeError(413, "payload_too_large", f"the {encoding} body inflates past {limit:,} bytes")
        if inflater.eof:
            return data
    raise ServeError(400, "bad_content_encoding", f"the body is not a complete {encoding} stream, as its "
                                                  "Content-Encoding says; send it uncompressed")


async def _once(body: bytes):
    yield body


async def uploads(request: Request, body: bytes, max_files: int) -> list[Upload]:
    """The images in a request: each file part of a multipart form, or the raw body as one image."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        parser = MultiPartParser(request.headers, _once(body), max_files=max_files, max_fields=max_files)
        try:
            form = await parser.parse()
        except MultiPartException as error:
            if str(error).startswith("Too many files"):
                if max_files == 1:
                    raise ServeError(400, "several_images", "send one image here, or several to "
                                                            "/v1/liveness/batch") from None
                raise ServeError(413, "too_many_images", f"{error} Split the batch.") from None
            raise ServeError(400, "bad_multipart", f"cannot parse the multipart body: {error}") from None
        found = []
        try:
            for field, value in form.multi_items():
                if isinstance(value, UploadFile):
                    found.append(Upload(value.filename or field, await value.read()))
        finally:
            await form.close()
        if not found:
            raise ServeError(400, "no_image", "the multipart form has no file part; send the image as a file")
        return found
    if content_type.startswith(_FORM_TYPES):
        raise ServeError(415, "unsupported_content_type",
                         f"content type {content_type!r}: send the encoded image as the raw body "
                         "(e.g. image/jpeg) or as a multipart/form-data file")
    return [Upload("body", body)]
