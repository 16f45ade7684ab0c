"""Adapters for anti-spoofing databases: real accesses are live records, attacks are spoof records with a species.

Every adapter cross-checks the database's redundant labels (folder against file name, protocol sign against
file code, JSON flag against JSON type) and stops on a disagreement rather than guess which one is right.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from liveness.data.records import (
    CELEBA_SPOOF_SPECIES,
    LIVE,
    SPECIES_CUT,
    SPECIES_LIVE,
    SPECIES_PRINT,
    SPECIES_PRINT_WARPED,
    SPECIES_REPLAY,
    SPOOF,
    SourceRecord,
)
from liveness.data.sources.common import (
    VIDEO_EXTENSIONS,
    SourceError,
    files_in_subfolders,
    find_file,
    line_error,
    list_files,
    make_record,
    parse_numbers,
    present_folders,
    read_lines,
    require_dir,
)

CELEBA_SPOOF_LABEL_LENGTH = 44
CELEBA_SPOOF_TYPE_INDEX = 40
CELEBA_SPOOF_FLAG_INDEX = 43
CELEBA_SPOOF_BOX_SIZE = 224  # the _BB.txt boxes are in the coordinates of the image resized to 224x224

OULU_SPLITS = {"Train": "train", "Dev": "dev", "Test": "test"}
OULU_FILE_SPECIES = {1: SPECIES_LIVE, 2: SPECIES_PRINT, 3: SPECIES_PRINT, 4: SPECIES_REPLAY, 5: SPECIES_REPLAY}
REPLAY_ATTACK_SPECIES = {"print": SPECIES_PRINT, "highdef": SPECIES_REPLAY, "mobile": SPECIES_REPLAY}
# (file stem pattern, example file name) pairs
REPLAY_ATTACK_REAL_NAME = (r"(client\d+)_.*", "client001_session01_webcam_authenticate_adverse_1.mov")
REPLAY_ATTACK_ATTACK_NAME = (
    rf"attack_({'|'.join(REPLAY_ATTACK_SPECIES)})_(client\d+)_.*",
    "attack_print_client001_session01_highdef_photo_adverse.mov",
)
CASIA_FASD_SPECIES = {
    **dict.fromkeys(("1", "2", "HR_1"), SPECIES_LIVE),
    **dict.fromkeys(("3", "4", "HR_2"), SPECIES_PRINT_WARPED),
    **dict.fromkeys(("5", "6", "HR_3"), SPECIES_CUT),
    **dict.fromkeys(("7", "8", "HR_4"), SPECIES_REPLAY),
}
MSU_MFSD_SPECIES = {"printed_photo": SPECIES_PRINT, "ipad_video": SPECIES_REPLAY, "iphone_video": SPECIES_REPLAY}
MSU_MFSD_REAL_NAME = (r"real_(client(\d+))_.*", "real_client001_android_SD_scene01.mp4")
MSU_MFSD_ATTACK_NAME = (
    rf"attack_(client(\d+))_.*_({'|'.join(MSU_MFSD_SPECIES)})_.*",
    "attack_client001_android_SD_ipad_video_scene01.mp4",
)
SIW_TYPE_SPECIES = {1: SPECIES_LIVE, 2: SPECIES_PRINT, 3: SPECIES_REPLAY}
SIW_NAME = (r"\d+-\d+-(\d+)-\d+-\d+", "003-1-1-1-1.mov")  # Subject-Sensor-Type-Medium-Session
MANIFEST_COLUMNS = ("path", "label", "attack_type", "subject")
MANIFEST_HEADER = ",".join(MANIFEST_COLUMNS) + "[,split]"
MANIFEST_LABELS = {"live": LIVE, "0": LIVE, "spoof": SPOOF, "1": SPOOF}


def iter_celeba_spoof(root: Path) -> Iterator[SourceRecord]:
    """CelebA-Spoof images, driven by ``metas/intra_test/{train,test}_label.json``; boxes from ``<img>_BB.txt``.

    Label and species come from the JSON (index 43: 0 live / 1 spoof; index 40: spoof type), not the folder
    name. Either label file may be absent (a partial download), not both.
    """
    require_dir("celeba_spoof", root, "the CelebA_Spoof folder holding Data/ and metas/")
    label_files = [root / "metas" / "intra_test" / f"{split}_label.json" for split in ("train", "test")]
    if not any(path.is_file() for path in label_files):
        raise SourceError(f"celeba_spoof: no label file; expected {label_files[0]} and/or {label_files[1]}")
    species = {}
    for path in label_files:
        if path.is_file():
            species.update(_read_celeba_spoof_labels(path))
    for key in sorted(species):
        _, split, subject, _, _ = key.split("/")
        image = root / key
        yield make_record("celeba_spoof", image, subject, species[key], split_hint=split, box=_celeba_spoof_box(image))


def iter_oulu_npu(root: Path, protocol: str | int = "1") -> Iterator[SourceRecord]:
    """OULU-NPU videos listed by one protocol's Train/Dev/Test files (``"3_1"`` reads ``Protocol_3/Train_1.txt``)."""
    require_dir("oulu_npu", root, "the OULU-NPU folder holding Protocols/ and {Train,Dev,Test}_files/")
    match = re.fullmatch(r"([12])|([34])_([1-6])", str(protocol))
    if match is None:
        raise SourceError(
            f"oulu_npu: protocol {protocol!r} is not one of 1, 2, 3_1 to 3_6, 4_1 to 4_6; "
            "in YAML write '3_1' in quotes (unquoted, 3_1 reads as the number 31)"
        )
    number, part = match[1] or match[2], match[3]
    folder = root / "Protocols" / f"Protocol_{number}"
    suffix = f"_{part}" if part else ""
    lists = {split: find_file("oulu_npu", folder, f"{split}{suffix}.txt") for split in OULU_SPLITS}
    records = [record for split, path in lists.items() for record in _read_oulu_list(root, split, path)]
    yield from sorted(records, key=lambda record: record.path)


def iter_replay_attack(root: Path) -> Iterator[SourceRecord]:
    """Idiap Replay-Attack ``{train,devel,test}/real/*.mov`` and ``.../attack/{fixed,hand}/*.mov``."""
    records = []
    for split in present_folders("replay_attack", root, ("devel", "test", "train")):
        for path in list_files(root / split / "real", VIDEO_EXTENSIONS):
            match = _match_name("replay_attack", path, *REPLAY_ATTACK_REAL_NAME)
            records.append(make_record("replay_attack", path, match[1], SPECIES_LIVE, split_hint=split, is_video=True))
        for support in ("fixed", "hand"):
            for path in list_files(root / split / "attack" / support, VIDEO_EXTENSIONS):
                match = _match_name("replay_attack", path, *REPLAY_ATTACK_ATTACK_NAME)
                species = REPLAY_ATTACK_SPECIES[match[1]]
                extra = {"support": support}
                records.append(
                    make_record("replay_attack", path, match[2], species, split_hint=split, is_video=True, extra=extra)
                )
    yield from sorted(records, key=lambda record: record.path)


def iter_casia_fasd(root: Path) -> Iterator[SourceRecord]:
    """CASIA-FASD ``{train,test}_release/<subject>/<file>.avi``; train and test subjects are different people."""
    splits = present_folders("casia_fasd", root, ("test_release", "train_release"))
    for folder in splits:
        split = folder.removesuffix("_release")
        for path in files_in_subfolders(root / folder, VIDEO_EXTENSIONS):
            if path.stem not in CASIA_FASD_SPECIES:
                raise SourceError(f"casia_fasd: unknown video {path}; expected names {', '.join(CASIA_FASD_SPECIES)}")
            subject = f"{split}_{path.parent.name}"
            species = CASIA_FASD_SPECIES[path.stem]
            yield make_record("casia_fasd", path, subject, species, split_hint=split, is_video=True)


def iter_msu_mfsd(root: Path) -> Iterator[SourceRecord]:
    """MSU-MFSD ``scene01/{real,attack}/`` (or ``{real,attack}/``) videos; splits from the optional sub lists."""
    require_dir("msu_mfsd", root, "the MSU-MFSD folder holding scene01/ or real/ and attack/")
    base = root / "scene01" if (root / "scene01").is_dir() else root
    present_folders("msu_mfsd", base, ("attack", "real"))
    splits = _read_msu_splits(root)
    records = []
    for kind in ("attack", "real"):
        for path in list_files(base / kind, VIDEO_EXTENSIONS):
            if kind == "real":
                match = _match_name("msu_mfsd", path, *MSU_MFSD_REAL_NAME)
                species = SPECIES_LIVE
            else:
                match = _match_name("msu_mfsd", path, *MSU_MFSD_ATTACK_NAME)
                species = MSU_MFSD_SPECIES[match[3]]
            split = splits.get(int(match[2]))
            records.append(make_record("msu_mfsd", path, match[1], species, split_hint=split, is_video=True))
    yield from sorted(records, key=lambda record: record.path)


def iter_siw(root: Path) -> Iterator[SourceRecord]:
    """SiW ``{Train,Test}/{live,spoof}/<sid>/<Subject-Sensor-Type-Medium-Session>.mov``.

    The Type field (1 live, 2 print, 3 replay) gives the species and must agree with the live/spoof folder.
    """
    for split in present_folders("siw", root, ("Test", "Train")):
        for kind in ("live", "spoof"):
            for path in files_in_subfolders(root / split / kind, VIDEO_EXTENSIONS):
                match = _match_name("siw", path, *SIW_NAME)
                species = SIW_TYPE_SPECIES.get(int(match[1]))
                if species is None or (species == SPECIES_LIVE) != (kind == "live"):
                    raise SourceError(
                        f"siw: {path} has Type {match[1]}, which does not belong in {kind}/ (1 live, 2 print, 3 replay)"
                    )
                yield make_record("siw", path, path.parent.name, species, split_hint=split.lower(), is_video=True)


def iter_csv_manifest(root: Path) -> Iterator[SourceRecord]:
    """A CSV ``path,label,attack_type,subject[,split]`` (``root`` is the CSV); paths are relative to its folder."""
    if not root.is_file():
        raise SourceError(f"csv_manifest: manifest {root} not found; give the path of a CSV headed {MANIFEST_HEADER}")
    records: dict[str, SourceRecord] = {}
    with open(root, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        missing = [column for column in MANIFEST_COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise line_error(root, 1, f"header lacks {', '.join(missing)}; expected {MANIFEST_HEADER}")
        for row in reader:
            record = _manifest_record(root, reader.line_num, row)
            if record.path in records:
                raise line_error(root, reader.line_num, f"{record.path} is listed twice")
            records[record.path] = record
    yield from (records[path] for path in sorted(records))


def _read_celeba_spoof_labels(path: Path) -> dict[str, str]:
    """A CelebA-Spoof label JSON as {``Data/<split>/<subject>/<live|spoof>/<img>``: species}, checked entry by entry."""
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise line_error(path, error.lineno, f"not valid JSON ({error.msg})") from error
    if not isinstance(labels, dict):
        raise SourceError(f"{path}: expected a JSON object mapping image paths to {CELEBA_SPOOF_LABEL_LENGTH} labels")
    return {key: _celeba_spoof_species(path, key, values) for key, values in labels.items()}


def _celeba_spoof_species(path: Path, key: str, values: object) -> str:
    """The species of one label entry; its path shape, length, spoof flag and spoof type must agree."""
    if not re.fullmatch(r"Data/(train|test)/[^/]+/(live|spoof)/[^/]+", key):
        raise SourceError(f"{path}: entry {key!r} is not a path like Data/train/4980/spoof/000001.jpg")
    length = CELEBA_SPOOF_LABEL_LENGTH
    if not (isinstance(values, list) and len(values) == length and all(isinstance(v, int) for v in values)):
        raise SourceError(f"{path}: entry {key!r} must be a list of {length} integers")
    kind, flag = values[CELEBA_SPOOF_TYPE_INDEX], values[CELEBA_SPOOF_FLAG_INDEX]
    if kind not in CELEBA_SPOOF_SPECIES or flag not in (0, 1):
        raise SourceError(
            f"{path}: entry {key!r} has spoof type {kind!r} (want 0-10) and live/spoof flag {flag!r} (want 0 or 1)"
        )
    if (flag == 0) != (kind == 0):
        raise SourceError(
            f"{path}: entry {key!r} disagrees with itself: index 43 says {'live' if flag == 0 else 'spoof'} "
            f"but index 40 says spoof type {kind} ({CELEBA_SPOOF_SPECIES[kind]})"
        )
    return CELEBA_SPOOF_SPECIES[kind]


def _celeba_spoof_box(image: Path) -> tuple[float, float, float, float] | None:
    """The ``<img>_BB.txt`` box scaled from 224x224 to the image's real size; None without a box or a readable image."""
    box_file = image.with_name(f"{image.stem}_BB.txt")
    if not box_file.is_file():
        return None
    line, text = next(read_lines(box_file), (1, ""))
    values = parse_numbers(text.split())
    if values is None or len(values) != 5:
        raise line_error(box_file, line, f"expected 'x y w h score', got {text!r}")
    if not image.is_file():  # absent, or a pipe or device that opening would wait on: curation gives it its row
        return None
    try:
        with Image.open(image) as opened:  # reads the header only
            width, height = opened.size
    except OSError:
        return None
    x, y, w, h, _ = values
    scale_x, scale_y = width / CELEBA_SPOOF_BOX_SIZE, height / CELEBA_SPOOF_BOX_SIZE
    return (x * scale_x, y * scale_y, (x + w) * scale_x, (y + h) * scale_y)


def _read_oulu_list(root: Path, split: str, path: Path) -> Iterator[SourceRecord]:
    """Records of one OULU-NPU protocol file (``+1,1_1_01_1`` lines), each sign checked against the file code."""
    for line, text in read_lines(path):
        match = re.fullmatch(r"([+-]1),\s*((\d)_(\d)_(\d+)_(\d))", text)
        if match is None:
            raise line_error(path, line, f"expected '+1,<phone>_<session>_<user>_<file>' or '-1,...', got {text!r}")
        sign, name, _, _, user, code = match.groups()
        species = OULU_FILE_SPECIES.get(int(code))
        if species is None or (sign == "+1") != (species == SPECIES_LIVE):
            codes = "1 real, 2-3 print, 4-5 replay"
            raise line_error(path, line, f"{sign} disagrees with file code {code} of {name} ({codes})")
        video = root / f"{split}_files" / f"{name}.avi"
        yield make_record("oulu_npu", video, user, species, split_hint=OULU_SPLITS[split], is_video=True)


def _read_msu_splits(root: Path) -> dict[int, str]:
    """{client number: split} from the optional ``train_sub_list.txt`` and ``test_sub_list.txt``."""
    splits: dict[int, str] = {}
    for split in ("train", "test"):
        path = root / f"{split}_sub_list.txt"
        if not path.is_file():
            continue
        for line, text in read_lines(path):
            if not text.isdigit():
                raise line_error(path, line, f"expected a client number, got {text!r}")
            if splits.setdefault(int(text), split) != split:
                raise line_error(path, line, f"client {text} is in both the train and the test list")
    return splits


def _match_name(source: str, path: Path, pattern: str, example: str) -> re.Match:
    """``pattern`` matched against the file stem, else a SourceError naming the file and a well-formed example."""
    match = re.fullmatch(pattern, path.stem)
    if match is None:
        raise SourceError(f"{source}: cannot read {path.name} in {path.parent}; expected names like {example}")
    return match


def _manifest_record(manifest: Path, line: int, row: dict) -> SourceRecord:
    """One manifest row as a record; a live row must have no attack type and a spoof row must have one."""
    if None in row or None in row.values():
        raise line_error(manifest, line, "the number of fields differs from the header's")
    label = MANIFEST_LABELS.get(row["label"].strip().lower())
    attack, subject, path = row["attack_type"].strip(), row["subject"].strip(), row["path"].strip()
    if label is None:
        raise line_error(manifest, line, f"label must be live, spoof, 0 or 1 (1 = spoof), got {row['label']!r}")
    if not path or not subject:
        raise line_error(manifest, line, "path and subject must not be empty")
    if (label == LIVE) != (attack.lower() in ("", "live")):
        need = "an empty attack_type (or live)" if label == LIVE else "an attack_type such as print or replay"
        raise line_error(manifest, line, f"a {label} row needs {need}, got {attack!r}")
    file = manifest.parent / path
    return make_record(
        "csv_manifest",
        file,
        subject,
        SPECIES_LIVE if label == LIVE else attack,
        split_hint=(row.get("split") or "").strip() or None,
        is_video=file.suffix.lower() in VIDEO_EXTENSIONS,
    )
