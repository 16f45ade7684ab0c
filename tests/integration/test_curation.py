"""Curation end to end on real photos (the astronaut) and the bad-input corpus: rows, reasons, shards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from liveness.config import parse_params
from liveness.data.shards import ShardDataset, read_manifest
from liveness.data.stage import LIVE_KIND, SPOOF_KIND, run_curation
from liveness.data.decode import REJECTION_REASONS
from tests.fixtures.bad_images import CONVERTED, CORPUS, write_bad_image_corpus


def _write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


@pytest.fixture(scope="module")
def live_root(tmp_path_factory) -> Path:
    """Two people (the astronaut and her mirror image), a near-duplicate, a blurred, a dark and a faceless
    photo, and one file of every bad kind."""
    root = tmp_path_factory.mktemp("live")
    face = data.astronaut()
    _write_rgb(root / "alice" / "portrait.jpg", face)
    _write_rgb(root / "alice" / "portrait_copy.png", face)
    _write_rgb(root / "bob" / "mirrored.jpg", face[:, ::-1])
    _write_rgb(root / "bob" / "blurred.jpg", cv2.GaussianBlur(face, (0, 0), 6))
    _write_rgb(root / "bob" / "dark.jpg", (face * 0.12).astype(np.uint8))
    _write_rgb(root / "bob" / "wall.jpg", np.full((200, 240, 3), 128, np.uint8))
    write_bad_image_corpus(root / "carol")
    return root


def _live_params(root: Path, out: Path, runner: str = "sequential"):
    return parse_params({
        "curate": {
            "sources": [{"name": "folder", "root": str(root)}],
            "out_dir": str(out),
            "crop": {"size": 64},
            "splits": {"train": 0.5, "val": 0.5},
            "shard_size": 2,
            "runner": {"kind": runner, "workers": 2, "chunk_size": 4},
        }
    })


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def live_run(live_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("curated")
    params = _live_params(live_root, out)
    result = run_curation(params.curate, LIVE_KIND, 0, out / "report", progress=False)
    return params, result, out


class TestLiveCuration:
    def test_every_bad_file_is_a_row_with_its_reason(self, live_run, live_root):
        manifest = live_run[1].manifest.set_index("path")
        for name, reason in CORPUS.items():
            if (live_root / "carol" / name).is_dir():
                continue  # the corpus's "unreadable" stand-in is a folder; a folder walk descends into it
            row = manifest.loc[str(live_root / "carol" / name)]
            if reason is None:  # converted, not refused: whatever happens next is about the face, not the file
                assert row["converted"] == CONVERTED[name], name
                assert row["reject_reason"].split(";")[0] not in REJECTION_REASONS, (name, row["reject_reason"])
            else:
                assert row["reject_reason"] == reason, name
                assert row["shard"] == -1

    def test_quality_reasons_and_near_duplicates(self, live_run, live_root):
        manifest = live_run[1].manifest.set_index("path")
        reason = lambda *parts: manifest.loc[str(live_root.joinpath(*parts)), "reject_reason"]
        assert reason("alice", "portrait.jpg") == ""
        assert reason("bob", "mirrored.jpg") == ""
        assert reason("alice", "portrait_copy.png") == "near_duplicate"
        assert "blurry" in reason("bob", "blurred.jpg").split(";")
        assert "too_dark" in reason("bob", "dark.jpg").split(";")
        assert reason("bob", "wall.jpg") == "no_face"
        assert manifest.loc[str(live_root / "bob" / "blurred.jpg"), "blur_laplacian_var"] < 40

    def test_shards_hold_the_accepted_crops(self, live_run):
        _, result, out = live_run
        manifest = read_manifest(out / "manifest.parquet")
        accepted = manifest[manifest["reject_reason"] == ""]
        dataset = ShardDataset(out / "manifest.parquet", out / "shards", split=None)
        assert len(dataset) == len(accepted) >= 2
        assert dataset[0].shape == (64, 64, 3) and dataset[0].dtype.is_floating_point is False
        # the astronaut's crop is centred on her face: skin tones in the middle, not the padding
        assert dataset[0].float()[24:40, 24:40].mean() > 80

    def test_no_subject_crosses_splits(self, live_run):
        manifest = live_run[1].manifest
        assert manifest.groupby("subject")["split"].nunique().max() == 1
        assert set(manifest["split"]) <= {"train", "val"}

    def test_report(self, live_run):
        report = live_run[2] / "report"
        summary = (report / "summary.md").read_text()
        assert "near_duplicate" in summary and "truncated" in summary
        for name in ("quality_histograms.png", "accepted_samples.png", "rejected_samples.png", "reject_reasons.csv"):
            assert (report / name).stat().st_size > 0, name

    def test_rerun_is_byte_identical(self, live_root, live_run, tmp_path):
        params = _live_params(live_root, tmp_path)
        run_curation(params.curate, LIVE_KIND, 0, tmp_path / "report", progress=False)
        first, second = live_run[2], tmp_path
        assert _digest(first / "shards") == _digest(second / "shards")
        assert (first / "manifest.parquet").read_bytes() == (second / "manifest.parquet").read_bytes()

    def test_process_pool_gives_the_same_bytes(self, live_root, live_run, tmp_path):
        params = _live_params(live_root, tmp_path, runner="processes")
        run_curation(params.curate, LIVE_KIND, 0, tmp_path / "report", progress=False)
        assert _digest(live_run[2] / "shards") == _digest(tmp_path / "shards")
        assert (live_run[2] / "manifest.parquet").read_bytes() == (tmp_path / "manifest.parquet").read_bytes()


@pytest.fixture(scope="module")
def spoof_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("spoof")
    face = data.astronaut()
    _write_rgb(root / "media" / "live.jpg", face)
    _write_rgb(root / "media" / "print_blurry.jpg", cv2.GaussianBlur(face, (0, 0), 6))
    _write_video(root / "media" / "replay.avi", [np.roll(face, shift, axis=1) for shift in range(0, 40, 5)])
    (root / "media" / "broken.avi").write_bytes(b"RIFF....AVI garbage")
    (root / "media" / "empty.avi").write_bytes(b"")
    (root / "manifest.csv").write_text(
        "path,label,attack_type,subject\n"
        "media/live.jpg,live,,s1\n"
        "media/print_blurry.jpg,spoof,print,s1\n"
        "media/replay.avi,spoof,replay,s2\n"
        "media/broken.avi,spoof,replay,s2\n"
        "media/empty.avi,spoof,replay,s3\n"
    )
    out = tmp_path_factory.mktemp("spoof_out")
    params = parse_params({"spoof": {
        "sources": [{"name": "csv_manifest", "root": str(root / "manifest.csv")}],
        "out_dir": str(out), "crop": {"size": 64}, "video_frames": 3,
        "runner": {"kind": "sequential"},
    }})
    return run_curation(params.spoof, SPOOF_KIND, 0, out / "report", progress=False).manifest


class TestSpoofPreparation:
    def test_no_quality_filter_on_spoof_sets(self, spoof_run):
        blurry = spoof_run[spoof_run["path"].str.endswith("print_blurry.jpg")].iloc[0]
        assert blurry["reject_reason"] == "" and blurry["species"] == "print"

    def test_videos_give_evenly_sampled_frames(self, spoof_run):
        frames = spoof_run[spoof_run["path"].str.endswith("replay.avi")]
        assert sorted(frames["frame_index"]) == [0, 4, 7]
        assert (frames["reject_reason"] == "").all()

    def test_broken_and_empty_videos_are_rows_with_reasons(self, spoof_run):
        by_name = spoof_run.set_index(spoof_run["path"].map(lambda p: Path(p).name))
        assert by_name.loc["broken.avi", "reject_reason"].startswith("video_")
        assert by_name.loc["empty.avi", "reject_reason"].startswith("video_")

    def test_splits_are_calib_and_test_by_subject(self, spoof_run):
        assert set(spoof_run["split"]) <= {"calib", "test"}
        assert spoof_run.groupby("subject")["split"].nunique().max() == 1
