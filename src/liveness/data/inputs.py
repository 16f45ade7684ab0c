"""What ``liveness predict`` scores: image files, folders (searched recursively) and sampled video frames.

A folder contributes files with an image or video suffix and files whose first bytes Pillow recognises as an
image, whatever they are named; it is searched as curation searches one (``walk_tree``). Every input keeps a
row: one that cannot be read carries its reason instead of bytes (``missing_file``, ``broken_symlink``,
``unreadable``, ``empty_file``, ``too_large``, or the video sampler's reason). Named pipes are read until
their writer closes them, never waited on without one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from liveness.data.decode import REJECTION_REASONS, ImageRejected, read_image_file
from liveness.data.sources.common import FOLDER_IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, looks_like_image, walk_tree

# path, frame, encoded image (None: failed), failure reason code, what failed in words
InputItem = tuple[str, "int | None", "bytes | None", str, str]


def find_input_files(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, int]]]:
    """The files ``liveness predict`` scores, in order, and per folder how many files it skipped (hidden, or
    neither images nor videos by name or content; 0 for a folder without files). A folder is searched as
    curation's folder source searches it (``walk_tree``: linked folders followed once, hidden names skipped); a
    subfolder that cannot be listed is itself an input, so it gets an ``unreadable`` row instead of silently
    contributing nothing. Nothing is read yet but what sniffing a suffix-less file needs."""
    skipped: list[tuple[Path, int]] = []
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            tree = walk_tree(path)
            # Known suffixes, and files whose first bytes look like an image whatever they are named.
            # Everything but folders: a named pipe or a device with an image suffix gets its own row too.
            chosen = [p for p in tree.files if p.suffix.lower() in FOLDER_IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
                      or looks_like_image(p)]
            passed_over = len(tree.files) - len(chosen) + tree.hidden
            if passed_over or not (tree.files or tree.unlisted):  # (folder, 0): it holds no file at all
                skipped.append((path, passed_over))
            files += chosen + tree.unlisted
        else:
            files.append(path)
    return files, skipped


def read_inputs(files: list[Path], frames: int) -> Iterator[InputItem]:
    """(path, frame, encoded image or None, failure reason, failure detail) per image file or sampled video
    frame, read one file at a time as the caller asks, so memory follows the batch, not the folder. Video frames
    are sampled evenly (``frames`` per video) and encoded as PNG, the bytes a registered model takes; every file
    yields at least one item."""
    import cv2

    from liveness.data.video import VideoError, sample_frames

    for path in files:
        if not path.exists():
            reason = "broken_symlink" if path.is_symlink() else "missing_file"
            yield str(path), None, None, reason, REJECTION_REASONS[reason]
        elif path.suffix.lower() in VIDEO_EXTENSIONS:
            try:
                sampled = sample_frames(path, frames)
            except VideoError as error:
                yield str(path), None, None, error.reason, str(error)
                continue
            for index, rgb in sampled:
                yield str(path), index, cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes(), "", ""
        else:
            try:
                yield str(path), None, read_image_file(path), "", ""
            except ImageRejected as error:
                yield str(path), None, None, error.reason, error.what
