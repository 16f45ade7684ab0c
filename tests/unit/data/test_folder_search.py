"""Searching a folder, as curation's folder source and `liveness predict` both do (``walk_tree``).

`liveness predict` once searched with ``Path.rglob``: files in a linked folder were silently left out, macOS
``._x.jpg`` resource forks became failed rows (exit code 1), and a subfolder that could not be listed just
contributed nothing, in both entry points. Now both follow linked folders once, skip hidden names and count
them, and give an unlistable folder its own ``unreadable`` row.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from liveness.data.curate import CurationSettings, process_chunk
from liveness.data.decode import ImageRejected, read_image_file
from liveness.data.inputs import find_input_files, read_inputs
from liveness.data.records import SourceRecord
from liveness.data.sources.common import walk_files, walk_tree
from liveness.data.sources.live import iter_folder
from tests.fixtures.bad_images import astronaut


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(astronaut()[:64, :64]).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def tree(tmp_path, jpeg) -> Path:
    """root/a.jpg, root/sub/b.jpg, root/linked -> ../elsewhere (c.jpg), root/loop -> root, hidden names."""
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "a.jpg").write_bytes(jpeg)
    (root / "sub" / "b.jpg").write_bytes(jpeg)
    (elsewhere / "c.jpg").write_bytes(jpeg)
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)  # a link back to an ancestor
    (root / "._a.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble resource fork")
    (root / ".cache").mkdir()
    (root / ".cache" / "d.jpg").write_bytes(jpeg)
    return root


@pytest.fixture
def unlistable(monkeypatch):
    """Make the folders named in the returned set fail to list, as a folder without read permission does for
    any user but root (the tests may run as root, which permissions do not stop)."""
    locked: set[Path] = set()
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(os.fsdecode(path)) in locked:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return locked


def names(paths: list[Path], root: Path) -> list[str]:
    return [path.relative_to(root).as_posix() for path in paths]


class TestWalkTree:
    def test_linked_folders_are_followed_once_and_hidden_names_counted(self, tree):
        found = walk_tree(tree)
        assert names(found.files, tree) == ["a.jpg", "linked/c.jpg", "sub/b.jpg"]
        assert found.hidden == 2 and found.unlisted == []

    def test_a_folder_that_cannot_be_listed_is_named(self, tree, unlistable):
        unlistable.add(tree / "sub")
        found = walk_tree(tree)
        assert names(found.files, tree) == ["a.jpg", "linked/c.jpg"]
        assert found.unlisted == [tree / "sub"]

    def test_the_root_itself_unlistable(self, tree, unlistable):
        unlistable.add(tree)
        assert walk_tree(tree).unlisted == [tree] and walk_tree(tree).files == []


class TestPredictSearch:
    def test_predict_finds_what_curation_finds(self, tree):
        files, skipped = find_input_files([tree])
        assert names(files, tree) == ["a.jpg", "linked/c.jpg", "sub/b.jpg"]
        assert names(files, tree) == names(walk_files(tree, frozenset({".jpg"}), sniff=True), tree)
        assert skipped == [(tree, 2)]  # the resource fork and the hidden folder, never a failed row

    def test_an_unlistable_subfolder_gets_an_unreadable_row(self, tree, unlistable):
        unlistable.add(tree / "sub")
        files, _ = find_input_files([tree])
        rows = {Path(path).relative_to(tree).as_posix(): reason for path, _, _, reason, _ in read_inputs(files, 1)}
        assert rows == {"a.jpg": "", "linked/c.jpg": "", "sub": "unreadable"}

    def test_the_row_says_the_folder_cannot_be_listed(self, tree, unlistable):
        unlistable.add(tree / "sub")
        with pytest.raises(ImageRejected, match="cannot be listed .*Permission denied.*check its permissions"):
            read_image_file(tree / "sub")

    def test_a_readable_folder_read_as_a_file_says_what_it_is(self, tree):
        with pytest.raises(ImageRejected, match="is a directory, not an image file") as caught:
            read_image_file(tree / "sub")
        assert caught.value.reason == "unreadable"


class TestCurationSearch:
    def test_an_unlistable_subfolder_becomes_a_rejected_curation_row(self, tree, unlistable):
        unlistable.add(tree / "sub")
        records = list(iter_folder(tree))
        assert names([Path(record.path) for record in records], tree) == ["a.jpg", "linked/c.jpg", "sub"]
        locked = next(record for record in records if Path(record.path).name == "sub")
        assert isinstance(locked, SourceRecord)
        (outcome,) = process_chunk([locked], CurationSettings(kind="live", crop_size=32))
        assert outcome.row["reject_reason"] == "unreadable" and "cannot be listed" in outcome.row["reject_detail"]
