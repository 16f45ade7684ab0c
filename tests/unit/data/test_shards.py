"""Shards + manifest: exact round trip, filtering, byte-identical rewrites, atomicity, DataLoader workers."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from liveness.config import AugmentParams
from liveness.data.shards import (
    MANIFEST_COLUMNS,
    ShardDataset,
    ShardWriter,
    read_manifest,
    shard_path,
    write_manifest,
)

SIZE = 8


def _crops(count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(count, SIZE, SIZE, 3), dtype=np.uint8)


def _curate(out_dir, crops, rejected=(), shard_size=3):
    """Write ``crops`` the way curation does: rejected indices get no shard; splits alternate by subject."""
    rows = []
    with ShardWriter(out_dir / "shards", SIZE, shard_size) as writer:
        for index, crop in enumerate(crops):
            accepted = index not in rejected
            shard, position = writer.add(crop) if accepted else (-1, -1)
            rows.append({
                "record_id": f"img/{index}.jpg", "source": "demo", "path": f"img/{index}.jpg",
                "frame_index": None if index % 2 else index, "subject": f"s{index % 4}", "label": "live",
                "species": "live", "split": "train" if index % 4 else "val", "synthetic": True,
                "shard": shard, "index_in_shard": position, "reject_reason": "" if accepted else "blurry",
                "phash": f"{index:016x}",
            })
    frame = pd.DataFrame(rows)
    write_manifest(frame, out_dir / "manifest.parquet")
    return frame


def _items(dataset):
    return np.stack([dataset[index].numpy() for index in range(len(dataset))])


def test_round_trip_across_shards(tmp_path):
    crops = _crops(10)
    _curate(tmp_path, crops)
    assert sorted(path.name for path in (tmp_path / "shards").iterdir()) == [
        "shard-00000.npy", "shard-00001.npy", "shard-00002.npy", "shard-00003.npy"]
    assert np.load(shard_path(tmp_path / "shards", 3)).shape == (1, SIZE, SIZE, 3)
    dataset = ShardDataset(tmp_path / "manifest.parquet", tmp_path / "shards", split=None)
    item = dataset[0]
    assert item.dtype == torch.uint8 and tuple(item.shape) == (SIZE, SIZE, 3)
    assert _items(dataset).tobytes() == crops.tobytes()
    assert len(dataset) == 10 and dataset.crop_size == SIZE
    with pytest.raises(IndexError):
        dataset[10]


def test_manifest_columns_and_dtypes(tmp_path):
    _curate(tmp_path, _crops(5), rejected={1})
    manifest = read_manifest(tmp_path / "manifest.parquet")
    assert tuple(manifest.columns) == (*MANIFEST_COLUMNS, "phash")
    assert manifest["frame_index"].dtype == "Int64" and manifest["frame_index"].isna().tolist() == [
        False, True, False, True, False]
    assert manifest["shard"].dtype == np.int64 and manifest["synthetic"].dtype == bool
    assert manifest.loc[1, ["shard", "index_in_shard", "reject_reason"]].tolist() == [-1, -1, "blurry"]


def test_rejected_rows_excluded_and_split_filter(tmp_path):
    crops = _crops(9)
    _curate(tmp_path, crops, rejected={1, 4})
    accepted = [index for index in range(9) if index not in {1, 4}]
    everything = ShardDataset(tmp_path / "manifest.parquet", tmp_path / "shards", split=None)
    assert _items(everything).tobytes() == crops[accepted].tobytes()
    val = ShardDataset(tmp_path / "manifest.parquet", tmp_path / "shards", split="val")
    expected = [index for index in accepted if index % 4 == 0]
    assert _items(val).tobytes() == crops[expected].tobytes()
    assert val.subjects.tolist() == ["s0"] * len(expected) and val.labels.tolist() == ["live"] * len(expected)
    assert val.record_ids.tolist() == [f"img/{index}.jpg" for index in expected]
    with pytest.raises(ValueError, match="'tset'"):
        ShardDataset(tmp_path / "manifest.parquet", tmp_path / "shards", split="tset")


def test_identical_input_gives_identical_bytes(tmp_path):
    crops = _crops(7, seed=4)
    for name in ("a", "b"):
        _curate(tmp_path / name, crops, rejected={2})
    files = sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a").rglob("*") if path.is_file())
    assert len(files) == 3  # manifest + 2 shards of 3 accepted crops
    for relative in files:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative


def test_exception_leaves_no_partial_shard_or_temp_file(tmp_path):
    out = tmp_path / "shards"
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(out, SIZE, shard_size=3) as writer:
            for crop in _crops(5):
                writer.add(crop)
            raise RuntimeError("boom")
    assert sorted(path.name for path in out.iterdir()) == ["shard-00000.npy"]  # the full one only


def test_failed_shard_write_leaves_no_temp_file(tmp_path, monkeypatch):
    def failing_fsync(descriptor):
        raise OSError("disk full")

    monkeypatch.setattr("liveness.io.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        with ShardWriter(tmp_path, SIZE, shard_size=2) as writer:
            for crop in _crops(2):
                writer.add(crop)
    assert list(tmp_path.iterdir()) == []


def test_writer_validates_crops(tmp_path):
    with ShardWriter(tmp_path, SIZE, shard_size=2) as writer:
        with pytest.raises(ValueError, match="uint8"):
            writer.add(np.zeros((SIZE, SIZE, 3), dtype=np.float32))
        with pytest.raises(ValueError, match=r"\(8, 8, 3\)"):
            writer.add(np.zeros((SIZE, SIZE + 1, 3), dtype=np.uint8))
    with pytest.raises(RuntimeError, match="closed"):
        writer.add(_crops(1)[0])


def test_manifest_validation_errors(tmp_path):
    frame = _curate(tmp_path, _crops(3))
    with pytest.raises(ValueError, match="'species'"):
        write_manifest(frame.drop(columns="species"), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="inconsistent"):
        write_manifest(frame.assign(reject_reason=["", "blurry", ""]), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="'shard'"):
        write_manifest(frame.assign(shard=[0.5, 0, 0]), tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


def test_dataloader_workers_match_single_process(tmp_path):
    _curate(tmp_path, _crops(12))
    dataset = ShardDataset(tmp_path / "manifest.parquet", tmp_path / "shards", split=None,
                           augment=AugmentParams(), seed=5)
    dataset[0]  # opens a map in this process; pickling must not carry it
    assert pickle.loads(pickle.dumps(dataset))._maps == {}
    dataset.set_epoch(3)
    single = torch.cat(list(DataLoader(dataset, batch_size=4, num_workers=0)))
    multi = torch.cat(list(DataLoader(dataset, batch_size=4, num_workers=2)))
    assert torch.equal(single, multi)
    dataset.set_epoch(4)
    assert not torch.equal(single, torch.cat(list(DataLoader(dataset, batch_size=4, num_workers=0))))


def test_missing_files_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.parquet.*rerun curation"):
        ShardDataset(tmp_path / "manifest.parquet", tmp_path / "shards", split=None)
    _curate(tmp_path, _crops(4))
    shard_path(tmp_path / "shards", 1).unlink()
    with pytest.raises(FileNotFoundError, match="shard-00001.npy.*rerun curation"):
        ShardDataset(tmp_path / "manifest.parquet", tmp_path / "shards", split=None)
