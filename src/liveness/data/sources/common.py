"""What the live and spoof adapters share: the error type, file-type sets, and finding and reading files."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from liveness.data.records import LIVE, SPECIES_LIVE, SPOOF, SourceRecord

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff",
                              ".gif", ".ico", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".pfm", ".hdr", ".heic", ".heif",
                              ".avif"})
# What a photo folder may hold: the decodable types above plus common ones curation rejects with a reason
# (not_an_image, animated) rather than skipping in silence.
FOLDER_IMAGE_EXTENSIONS = IMAGE_EXTENSIONS | {".jp2", ".jxl", ".svg", ".psd", ".eps", ".ps",
                                              ".pdf", ".wmf", ".emf", ".dng", ".cr2", ".nef", ".arw"}
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})  # what OpenCV opens


class SourceError(ValueError):
    """A database is missing, laid out differently from what its adapter reads, or has a bad label file."""


def require_dir(source: str, path: Path, layout: str) -> Path:
    """``path`` if it is a folder, else a SourceError saying which layout the adapter expected there."""
    if not path.is_dir():
        raise SourceError(f"{source}: folder {path} not found; expected {layout}")
    return path


def present_folders(source: str, root: Path, names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` that are folders in ``root``; a SourceError when none is."""
    require_dir(source, root, f"the {source} folder holding {', '.join(names)}")
    present = [name for name in names if (root / name).is_dir()]
    if not present:
        raise SourceError(f"{source}: none of {', '.join(f'{name}/' for name in names)} found in {root}")
    return present


def find_file(source: str, root: Path, name: str, folders: tuple[str, ...] = ("",), what: str = "label file") -> Path:
    """The first of ``root/folder/name`` that exists, else a SourceError listing every place looked at."""
    found = find_optional(root, name, folders)
    if found is None:
        places = " or ".join(str(root / folder / name) for folder in folders)
        raise SourceError(f"{source}: {what} {name} not found; expected it at {places}")
    return found


def find_optional(root: Path, name: str, folders: tuple[str, ...] = ("",)) -> Path | None:
    """The first of ``root/folder/name`` that exists, or None."""
    return next((root / folder / name for folder in folders if (root / folder / name).exists()), None)


def make_record(source: str, path: Path, subject: str, species: str, **fields) -> SourceRecord:
    """A record whose label follows from its species, so the two can never disagree."""
    label = LIVE if species == SPECIES_LIVE else SPOOF
    return SourceRecord(source=source, path=str(path), subject=subject, label=label, species=species, **fields)


def line_error(path: Path, line: int, message: str) -> SourceError:
    """A SourceError pointing at ``path:line``, so the bad line can be opened and fixed."""
    return SourceError(f"{path}:{line}: {message}")


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) for each non-blank line of a text label file."""
    with open(path, encoding="utf-8-sig") as stream:
        for number, text in enumerate(stream, start=1):
            if text.strip():
                yield number, text.strip()


def parse_numbers(fields: list[str]) -> list[float] | None:
    """``fields`` as floats, or None when any of them is not a number."""
    try:
        return [float(field) for field in fields]
    except ValueError:
        return None


def points(values: list[float]) -> tuple[tuple[float, float], ...]:
    """Flat ``x1, y1, x2, y2, ...`` coordinates as (x, y) pairs."""
    return tuple(zip(values[0::2], values[1::2], strict=True))


def list_files(folder: Path, extensions: frozenset[str]) -> list[Path]:
    """Files directly in ``folder`` whose extension (any case) is in ``extensions``, sorted; none if absent."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if _wanted(path.name, extensions) and not path.is_dir())


def files_in_subfolders(base: Path, extensions: frozenset[str]) -> list[Path]:
    """Files one folder down (``base/<folder>/<file>``), the layout of most databases, sorted."""
    if not base.is_dir():
        return []
    folders = sorted(path for path in base.iterdir() if path.is_dir() and not path.name.startswith("."))
    return [path for folder in folders for path in list_files(folder, extensions)]


@dataclass(frozen=True)
class FolderTree:
    """What ``walk_tree`` found under a folder."""

    files: list[Path]  # every entry that is not a folder (files, links, pipes, devices), sorted
    hidden: int  # hidden names (``.name``) passed over, files and folders
    unlisted: list[Path]  # folders that could not be listed (permissions, vanished): their files are unknown


def walk_tree(root: Path) -> FolderTree:
    """Everything under ``root`` at any depth that is not a folder, as curation's folder source and ``liveness
    predict`` both search a folder.

    Symlinked folders are followed, but each real folder is read once, so a link back to an ancestor cannot
    loop and a linked copy yields no duplicates. Hidden files and folders (``.name``, such as macOS ``._x.jpg``
    resource forks) are skipped and counted: they are never face images. A folder that cannot be listed is
    named in ``unlisted`` rather than silently contributing nothing.
    """
    seen: set[tuple[int, int]] = set()
    found: list[Path] = []
    unlisted: list[Path] = []
    hidden = 0

    def cannot_list(error: OSError) -> None:
        unlisted.append(Path(error.filename) if error.filename else root)

    for folder, dirnames, filenames in os.walk(root, onerror=cannot_list, followlinks=True):
        try:
            status = os.stat(folder)
        except OSError:
            unlisted.append(Path(folder))
            dirnames.clear()
            continue
        if (status.st_dev, status.st_ino) in seen:
            dirnames.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        hidden += sum(name.startswith(".") for name in (*dirnames, *filenames))
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        found.extend(Path(folder, name) for name in filenames if not name.startswith("."))
    return FolderTree(sorted(found), hidden, sorted(set(unlisted)))


def walk_files(root: Path, extensions: frozenset[str], sniff: bool = False) -> list[Path]:
    """Files under ``root`` at any depth (``walk_tree``) with an extension in ``extensions`` (with ``sniff``, also
    files of any other name whose first bytes Pillow recognises as an image), sorted, followed by the folders
    that could not be listed: each becomes a record whose load fails as ``unreadable``, so a run says which
    part of the source it never saw."""
    tree = walk_tree(root)
    chosen = [path for path in tree.files
              if path.suffix.lower() in extensions or (sniff and looks_like_image(path))]
    return chosen + tree.unlisted


def _wanted(name: str, extensions: frozenset[str]) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in extensions


def looks_like_image(path: Path) -> bool:
    """Whether Pillow recognises the file's first bytes as an image, or they start like a raster the decoder
    hands to OpenCV (float TIFF, PFM, HDR); for image files without an image suffix."""
    from PIL import Image

    from liveness.data.decode import OPENCV_SIGNATURES

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False  # sniffing a pipe would eat its bytes, or wait for a writer; a device never ends
        with Image.open(path):
            return True
    except Exception:  # noqa: BLE001 - anything unrecognisable or unreadable is not an image here
        pass
    try:
        with open(path, "rb") as stream:
            return stream.read(16).startswith(OPENCV_SIGNATURES)
    except OSError:
        return False
