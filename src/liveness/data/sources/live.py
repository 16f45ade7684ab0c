"""Adapters for live-face databases: every record is a live image (label LIVE, species SPECIES_LIVE)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from liveness.data.records import SPECIES_LIVE, SourceRecord
from liveness.data.sources.common import (
    FOLDER_IMAGE_EXTENSIONS,
    IMAGE_EXTENSIONS,
    SourceError,
    files_in_subfolders,
    find_file,
    find_optional,
    line_error,
    make_record,
    parse_numbers,
    points,
    present_folders,
    read_lines,
    require_dir,
    walk_files,
)

CELEBA_LANDMARK_HEADER = (
    "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
).split()
CELEBA_PARTITIONS = {"0": "train", "1": "val", "2": "test"}
VGGFACE2_BOX_HEADER = ["NAME_ID", "X", "Y", "W", "H"]
VGGFACE2_LANDMARK_HEADER = ["NAME_ID"] + [f"P{n}{axis}" for n in range(1, 6) for axis in "XY"]


def iter_folder(root: Path) -> Iterator[SourceRecord]:
    """Any folder of photos, at any depth; the subject is the photo's folder name ("unknown" at the root)."""
    require_dir("folder", root, "a folder of face photos")
    for path in walk_files(root, FOLDER_IMAGE_EXTENSIONS, sniff=True):
        subject = "unknown" if path.parent == root else path.parent.name
        yield make_record("folder", path, subject, SPECIES_LIVE)


def iter_celeba(root: Path, use_landmarks: bool = True) -> Iterator[SourceRecord]:
    """CelebA aligned images, driven by ``identity_CelebA.txt``; landmarks and partition when present.

    Annotation files may sit at the root or in the official ``Anno/`` and ``Eval/`` folders. The partition
    file is optional (no split hint without it); the landmark file is required unless ``use_landmarks`` is off.
    """
    require_dir("celeba", root, "the CelebA folder holding img_align_celeba/ and the annotation files")
    images = find_file("celeba", root, "img_align_celeba", ("", "Img"), what="image folder")
    identities = _read_image_numbers(find_file("celeba", root, "identity_CelebA.txt", ("", "Anno")))
    landmarks = (
        _read_celeba_landmarks(find_file("celeba", root, "list_landmarks_align_celeba.txt", ("", "Anno")))
        if use_landmarks
        else {}
    )
    partition = find_optional(root, "list_eval_partition.txt", ("", "Eval"))
    splits = _read_image_numbers(partition, CELEBA_PARTITIONS) if partition else {}
    for name in sorted(identities):
        yield make_record(
            "celeba",
            images / name,
            identities[name],
            SPECIES_LIVE,
            split_hint=splits.get(name),
            landmarks=landmarks.get(name),
        )


def iter_ffhq(root: Path) -> Iterator[SourceRecord]:
    """FFHQ ``images1024x1024/NNNNN/NNNNN.png`` (root holds that folder or is it).

    FFHQ has no identity labels, so each image is its own subject.
    """
    for path in files_in_subfolders(_database_folder("ffhq", root, "images1024x1024"), IMAGE_EXTENSIONS):
        yield make_record("ffhq", path, path.stem, SPECIES_LIVE)


def iter_lfw(root: Path) -> Iterator[SourceRecord]:
    """LFW ``lfw/<Name>/<Name>_NNNN.jpg``; root is the folder holding ``lfw/`` or that folder itself."""
    for path in files_in_subfolders(_database_folder("lfw", root, "lfw"), IMAGE_EXTENSIONS):
        yield make_record("lfw", path, path.parent.name, SPECIES_LIVE)


def iter_casia_webface(root: Path) -> Iterator[SourceRecord]:
    """CASIA-WebFace ``<id>/<NNN>.jpg``; the subject is the 7-digit id folder."""
    require_dir("casia_webface", root, "the CASIA-WebFace folder of <id>/<NNN>.jpg")
    for path in files_in_subfolders(root, IMAGE_EXTENSIONS):
        yield make_record("casia_webface", path, path.parent.name, SPECIES_LIVE)


def iter_vggface2(root: Path) -> Iterator[SourceRecord]:
    """VGGFace2 ``{train,test}/nXXXXXX/NNNN_NN.jpg``, with loose boxes and landmarks when ``bb_landmark/`` has them."""
    for split in present_folders("vggface2", root, ("test", "train")):
        boxes = _read_vggface2_csv(root / "bb_landmark" / f"loose_bb_{split}.csv", VGGFACE2_BOX_HEADER)
        marks = _read_vggface2_csv(root / "bb_landmark" / f"loose_landmark_{split}.csv", VGGFACE2_LANDMARK_HEADER)
        for path in files_in_subfolders(root / split, IMAGE_EXTENSIONS):
            key = f"{path.parent.name}/{path.stem}"
            box = boxes.get(key)
            yield make_record(
                "vggface2",
                path,
                path.parent.name,
                SPECIES_LIVE,
                split_hint=split,
                box=None if box is None else (box[0], box[1], box[0] + box[2], box[1] + box[3]),
                landmarks=points(marks[key]) if key in marks else None,
            )


def _database_folder(source: str, root: Path, name: str) -> Path:
    """``root/name`` when it exists, else ``root`` itself (the user pointed at that folder directly)."""
    require_dir(source, root, f"the folder holding {name}/, or {name}/ itself")
    return root / name if (root / name).is_dir() else root


def _read_image_numbers(path: Path, names: dict[str, str] | None = None) -> dict[str, str]:
    """``<image> <number>`` lines as {image: number}, or {image: names[number]} when ``names`` is given."""
    result = {}
    for line, text in read_lines(path):
        fields = text.split()
        if len(fields) != 2 or not fields[1].isdigit() or (names is not None and fields[1] not in names):
            expected = "number" if names is None else "|".join(names)
            raise line_error(path, line, f"expected '<image> <{expected}>', got {text!r}")
        result[fields[0]] = fields[1] if names is None else names[fields[1]]
    return result


def _read_celeba_landmarks(path: Path) -> dict[str, tuple[tuple[float, float], ...]]:
    """``list_landmarks_align_celeba.txt``: a count line, a header line, then an image and 10 coordinates per line."""
    lines = read_lines(path)
    line, text = next(lines, (1, ""))
    if not text.isdigit():
        raise line_error(path, line, f"expected the number of images, got {text!r}")
    count = int(text)
    line, text = next(lines, (2, ""))
    if text.split() != CELEBA_LANDMARK_HEADER:
        raise line_error(path, line, f"expected the header {' '.join(CELEBA_LANDMARK_HEADER)!r}, got {text!r}")
    result = {}
    for line, text in lines:
        fields = text.split()
        values = parse_numbers(fields[1:])
        if len(fields) != 11 or values is None:
            raise line_error(path, line, f"expected '<image>' and 10 coordinates, got {text!r}")
        result[fields[0]] = points(values)
    if len(result) != count:
        raise SourceError(f"{path}: line 1 announces {count} images but {len(result)} follow; download the file again")
    return result


def _read_vggface2_csv(path: Path, header: list[str]) -> dict[str, list[float]]:
    """A ``bb_landmark`` CSV as {``nXXXXXX/NNNN_NN``: numbers}; empty when the optional file is absent."""
    if not path.is_file():
        return {}
    result = {}
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        found = [field.strip() for field in next(reader, [])]
        if found != header:
            raise line_error(path, 1, f"expected the header {','.join(header)}, got {','.join(found)}")
        for row in reader:
            if not row:
                continue
            fields = [field.strip() for field in row]
            values = parse_numbers(fields[1:])
            if len(fields) != len(header) or values is None:
                raise line_error(path, reader.line_num, f"expected a name and {len(header) - 1} numbers, got {row}")
            result[fields[0]] = values
    return result
