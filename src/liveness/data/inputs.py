"""What ``liveness predict`` scores: image files, folders (searched recursively) and sampled video frames.

A folder contributes files with an image or video suffix and files whose first bytes Pillow recognises as an
image, whatever they are named. Every input keeps a row: one that cannot be read carries its reason instead of
bytes (``missing_file``, ``broken_symlink``, ``unreadable``, ``empty_file``, ``too_large``, or the video
sampler's reason). Named pipes are read until their writer closes them, never waited on without one.
"""

from __future__ import annotations

from pathlib import Path

from liveness.data.decode import ImageRejected, read_image_file
from liveness.data.sources.common import FOLDER_IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, looks_like_image

InputItem = tuple[str, "int | None", "bytes | None", str]  # path, frame, encoded image (None: failed), reason


def discover_inputs(paths: list[Path], frames: int) -> tuple[list[InputItem], list[tuple[Path, int]]]:
    """(path, frame, encoded image or None, failure reason) per image file or sampled video frame, and per folder
    how many files it skipped (neither images nor videos by name or content; 0 for a folder without files).
    Video frames are sampled evenly (``frames`` per video) and encoded as PNG, the bytes a registered model takes."""
    import cv2

    from liveness.data.video import VideoError, sample_frames

    skipped: list[tuple[Path, int]] = []
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            # Known suffixes, and files whose first bytes look like an image whatever they are named.
            # Everything but folders: a named pipe or a device with an image suffix gets its own row too.
            found = sorted(p for p in path.rglob("*") if not p.is_dir())
            chosen = [p for p in found if p.suffix.lower() in FOLDER_IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
                      or looks_like_image(p)]
            if len(chosen) < len(found) or not found:  # (folder, 0): it holds no file at all
                skipped.append((path, len(found) - len(chosen)))
            files += chosen
        else:
            files.append(path)
    items: list[tuple[str, int | None, bytes | None, str]] = []
    for path in files:
        if not path.exists():
            items.append((str(path), None, None, "broken_symlink" if path.is_symlink() else "missing_file"))
        elif path.suffix.lower() in VIDEO_EXTENSIONS:
            try:
                for index, rgb in sample_frames(path, frames):
                    items.append((str(path), index, cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes(), ""))
            except VideoError as error:
                items.append((str(path), None, None, error.reason))
        else:
            try:
                items.append((str(path), None, read_image_file(path), ""))
            except ImageRejected as error:
                items.append((str(path), None, None, error.reason))
    return items, skipped
