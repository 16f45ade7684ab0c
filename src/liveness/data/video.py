"""Sample evenly spaced frames from a video, and turn a video record into per-frame records."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from liveness.data.records import SourceRecord


VIDEO_REASONS: dict[str, str] = {
    "video_missing": "the video path does not exist",
    "video_unreadable": "OpenCV cannot open it (not a video, or damaged), or it is not a regular file (a pipe, a "
                        "device)",
    "video_no_frames": "the video opens but holds no decodable frame",
}


class VideoError(ValueError):
    """A video that cannot be sampled; ``reason`` is a short code for curation reports."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def sample_frames(path: Path | str, count: int) -> list[tuple[int, np.ndarray]]:
    """Up to ``count`` evenly spaced frames as (frame index, RGB uint8 HxWx3), first and last frame included.

    The container's frame count picks the indices. When it is missing, or the video ends before the
    indices it promised, every frame is counted by reading, and the indices are picked again from that.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    path = Path(path)
    if not path.exists():
        raise VideoError("video_missing", f"video {path} not found")
    if not path.is_file():  # OpenCV would wait forever on a named pipe, or read a device without end
        raise VideoError("video_unreadable", f"video {path} is not a regular file (a folder, pipe or device); "
                                             "pass the video file itself")
    with _capture(path) as capture:
        reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if reported > 0:
            indices = _even_indices(reported, count)
            frames = _read_frames(capture, indices)
            if len(frames) == len(indices):
                return frames
    with _capture(path) as capture:
        total = _count_frames(capture)
    if total == 0:
        raise VideoError("video_no_frames", f"video {path} has no decodable frame; check the file or re-encode it")
    with _capture(path) as capture:
        return _read_frames(capture, _even_indices(total, count))


def frame_records(record: SourceRecord, indices: list[int]) -> list[SourceRecord]:
    """One record per sampled frame of a video record: same fields, ``frame_index`` set, still ``is_video``."""
    if not record.is_video:
        raise ValueError(f"{record.path} is an image record; only video records have frames")
    return [dataclasses.replace(record, frame_index=index) for index in indices]


def _even_indices(total: int, count: int) -> list[int]:
    return sorted({int(index) for index in np.rint(np.linspace(0, total - 1, count))})


@contextmanager
def _capture(path: Path) -> Iterator[cv2.VideoCapture]:
    """An opened capture, released on exit; VideoError when OpenCV cannot open the file."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError("video_unreadable", f"video {path} cannot be opened: not a video, or damaged")
        yield capture
    finally:
        capture.release()


def _read_frames(capture: cv2.VideoCapture, indices: list[int]) -> list[tuple[int, np.ndarray]]:
    """The frames at sorted ``indices``, decoded in order: seeking by frame number is not exact in every codec."""
    wanted, frames = set(indices), []
    for index in range(indices[-1] + 1):
        if not capture.grab():
            break
        if index in wanted:
            ok, frame = capture.retrieve()
            if not ok:
                break
            frames.append((index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
    return frames


def _count_frames(capture: cv2.VideoCapture) -> int:
    total = 0
    while capture.grab():
        total += 1
    return total
