"""Curated crops as large uint8 ``.npy`` shards plus a Parquet manifest, and the Dataset that trains from them.

Layout of a shards folder: ``shard-00000.npy``, ``shard-00001.npy``, ... each a uint8 (n, S, S, 3) array of
``shard_size`` crops (the last may hold fewer). The manifest has one row per curated record, accepted or not;
accepted rows point at (``shard``, ``index_in_shard``), rejected rows carry -1 there and a ``reject_reason``.

Training reads crops through read-only memory maps: no image decoding, and only the pages touched are loaded.
The manifest is Parquet written with pyarrow, whose output is byte-identical for identical input (no
timestamps are stored; ``created_by`` is the fixed library version string) and is written without pandas
metadata, so re-running curation on the same data gives the same bytes.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from liveness.config import AugmentParams
from liveness.data.augment import augment_crop, epoch_rng
from liveness.io import atomic_write, atomic_write_bytes

SHARD_PATTERN = "shard-{index:05d}.npy"
NOT_SHARDED = -1  # shard and index_in_shard of rejected rows

# Required columns in their fixed order, with their Parquet types; only frame_index may be null (still images).
MANIFEST_SCHEMA = pa.schema([
    pa.field("record_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("frame_index", pa.int64(), nullable=True),
    pa.field("subject", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("species", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("synthetic", pa.bool_(), nullable=False),
    pa.field("shard", pa.int64(), nullable=False),
    pa.field("index_in_shard", pa.int64(), nullable=False),
    pa.field("reject_reason", pa.string(), nullable=False),
])
MANIFEST_COLUMNS: tuple[str, ...] = tuple(MANIFEST_SCHEMA.names)

_RERUN = "rerun curation to rebuild the shards and manifest"


def shard_path(shards_dir: Path, index: int) -> Path:
    return Path(shards_dir) / SHARD_PATTERN.format(index=index)


class ShardWriter:
    """Appends uint8 (S, S, 3) crops to ``shard-NNNNN.npy`` files of ``shard_size`` crops each.

    Holds at most one shard in memory. Each shard is written atomically when full, the last one on a clean
    exit from the ``with`` block; an exception inside the block discards the unfinished shard.
    """

    def __init__(self, out_dir: Path, crop_size: int, shard_size: int = 4096) -> None:
        if crop_size <= 0 or shard_size <= 0:
            raise ValueError(f"crop_size ({crop_size}) and shard_size ({shard_size}) must be positive")
        self.out_dir = Path(out_dir)
        self.crop_size = crop_size
        self.shard_size = shard_size
        self.shard_index = 0  # the shard being filled
        self._filled = 0
        self._buffer: np.ndarray | None = None
        self._closed = False

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self._buffer, self._closed = None, True

    def add(self, crop: np.ndarray) -> tuple[int, int]:
        """Store ``crop``; returns where it lives: (shard index, index within that shard)."""
        if self._closed:
            raise RuntimeError(f"ShardWriter for {self.out_dir} is closed; open a new one to add crops")
        self._check_crop(crop)
        if self._buffer is None:
            shape = (self.shard_size, self.crop_size, self.crop_size, 3)
            self._buffer = np.empty(shape, dtype=np.uint8)
        location = (self.shard_index, self._filled)
        self._buffer[self._filled] = crop
        self._filled += 1
        if self._filled == self.shard_size:
            self._flush()
        return location

    def close(self) -> None:
        """Write the last, partly filled shard (if any); further ``add`` calls fail."""
        if not self._closed and self._filled:
            self._flush()
        self._buffer, self._closed = None, True

    def _check_crop(self, crop: np.ndarray) -> None:
        expected = (self.crop_size, self.crop_size, 3)
        if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8 or crop.shape != expected:
            got = f"{crop.dtype} {crop.shape}" if isinstance(crop, np.ndarray) else type(crop).__name__
            raise ValueError(f"shard crops must be uint8 arrays of shape {expected}, got {got}")

    def _flush(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        shard = self._buffer[: self._filled]
        atomic_write(shard_path(self.out_dir, self.shard_index),
                     lambda stream: np.lib.format.write_array(stream, shard, allow_pickle=False))
        self.shard_index += 1
        self._filled = 0


def _column_to_pandas(frame: pd.DataFrame, field: pa.Field) -> pd.Series:
    """One required column coerced to its manifest dtype, with an error naming the column when it cannot be."""
    series = frame[field.name]
    missing = series.isna()
    if not field.nullable and missing.any():
        rows = list(series.index[missing][:10])
        raise ValueError(f"manifest column {field.name!r} has missing values (rows {rows}); fill them or drop the rows")
    if pa.types.is_string(field.type):
        if not pd.api.types.is_string_dtype(series):
            raise ValueError(f"manifest column {field.name!r} must hold strings, got dtype {series.dtype}")
        return series.astype("str")
    if pa.types.is_boolean(field.type):
        if not pd.api.types.is_bool_dtype(series):
            raise ValueError(f"manifest column {field.name!r} must be boolean, got dtype {series.dtype}")
        return series.astype("bool")
    not_integers = ValueError(f"manifest column {field.name!r} must hold integers, got dtype {series.dtype}")
    if pd.api.types.is_bool_dtype(series):
        raise not_integers
    try:
        integers = series.astype("Int64")
    except (TypeError, ValueError) as error:
        raise not_integers from error
    return integers if field.nullable else integers.astype("int64")


def validate_manifest(frame: pd.DataFrame) -> pd.DataFrame:
    """The manifest with required columns first in ``MANIFEST_COLUMNS`` order and coerced to their dtypes.

    Raises ValueError if a required column is missing or ill-typed, or if ``shard``/``index_in_shard`` disagree
    with ``reject_reason`` (accepted rows need a location >= 0, rejected rows must carry -1).
    """
    missing = [column for column in MANIFEST_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"manifest lacks required column(s) {missing}; required: {list(MANIFEST_COLUMNS)}")
    frame = frame.reset_index(drop=True)
    result = pd.DataFrame({field.name: _column_to_pandas(frame, field) for field in MANIFEST_SCHEMA})
    for column in frame.columns:
        if column not in MANIFEST_COLUMNS:
            result[column] = frame[column]
    accepted = result["reject_reason"] == ""
    located = (result["shard"] >= 0) & (result["index_in_shard"] >= 0)
    unlocated = (result["shard"] == NOT_SHARDED) & (result["index_in_shard"] == NOT_SHARDED)
    bad = result.index[(accepted & ~located) | (~accepted & ~unlocated)]
    if len(bad):
        raise ValueError(
            f"manifest rows {list(bad[:10])} have shard/index_in_shard inconsistent with reject_reason: accepted "
            f"rows (reject_reason '') need shard >= 0 and index_in_shard >= 0, rejected rows need -1 in both"
        )
    return result


def _to_table(frame: pd.DataFrame) -> pa.Table:
    """A validated manifest as an Arrow table: required columns typed by ``MANIFEST_SCHEMA``, extras inferred."""
    arrays = [pa.array(frame[field.name], type=field.type, from_pandas=True) for field in MANIFEST_SCHEMA]
    fields = list(MANIFEST_SCHEMA)
    for column in frame.columns[len(MANIFEST_COLUMNS):]:
        try:
            arrays.append(pa.array(frame[column], from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ValueError(f"manifest column {column!r} cannot be stored in Parquet: {error}") from None
        fields.append(pa.field(column, arrays[-1].type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_manifest(frame: pd.DataFrame, path: Path) -> None:
    """Validate ``frame`` and write it atomically as Parquet; identical input gives identical bytes."""
    buffer = io.BytesIO()
    pq.write_table(_to_table(validate_manifest(frame)), buffer, compression="zstd")
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_manifest(path: Path) -> pd.DataFrame:
    """The manifest written by ``write_manifest``, validated, with its column order and dtypes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found; {_RERUN}")
    table = pq.read_table(path)
    return validate_manifest(table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get))


class ShardDataset(Dataset):
    """Accepted crops of one split (``None``: all splits) as uint8 (S, S, 3) tensors, in manifest order.

    Shards are memory-mapped lazily in ``__getitem__`` and cached per process; pickling drops the maps, so the
    dataset works with DataLoader workers. ``set_epoch`` selects the augmentation epoch (see ``augment``).
    ``labels``, ``species``, ``subjects`` and ``record_ids`` are per-item arrays for evaluation.
    """

    def __init__(self, manifest: Path | pd.DataFrame, shards_dir: Path, split: str | None = None,
                 augment: AugmentParams | None = None, seed: int = 0) -> None:
        frame = validate_manifest(manifest) if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
        if split is not None and split not in set(frame["split"]):
            raise ValueError(f"split {split!r} is not in the manifest, which has {sorted(set(frame['split']))}")
        keep = frame["reject_reason"] == ""
        if split is not None:
            keep &= frame["split"] == split
        rows = frame[keep]
        self.shards_dir = Path(shards_dir)
        self.split = split
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.shard = rows["shard"].to_numpy(dtype=np.int64)
        self.index_in_shard = rows["index_in_shard"].to_numpy(dtype=np.int64)
        self.labels = rows["label"].to_numpy(dtype=str)
        self.species = rows["species"].to_numpy(dtype=str)
        self.subjects = rows["subject"].to_numpy(dtype=str)
        self.record_ids = rows["record_id"].to_numpy(dtype=str)
        self.crop_size = self._check_shards()
        self._maps: dict[int, np.ndarray] = {}

    def _check_shards(self) -> int | None:
        """Check every referenced shard exists and holds enough uint8 crops of one size; return that size."""
        sizes = set()
        needed = pd.Series(self.index_in_shard).groupby(self.shard).max() + 1
        for index, count in needed.items():
            path = shard_path(self.shards_dir, int(index))
            if not path.is_file():
                raise FileNotFoundError(f"shard {path} named by the manifest not found; {_RERUN}")
            mapped = np.load(path, mmap_mode="r")  # reads the header only; dropped at once
            shape, dtype = mapped.shape, mapped.dtype
            if dtype != np.uint8 or len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
                raise ValueError(f"shard {path} holds {dtype} {shape}, not uint8 (n, S, S, 3) crops; {_RERUN}")
            if shape[0] < count:
                raise ValueError(f"shard {path} holds {shape[0]} crops but the manifest needs {count}; {_RERUN}")
            sizes.add(shape[1])
        if len(sizes) > 1:
            raise ValueError(f"shards in {self.shards_dir} mix crop sizes {sorted(sizes)}; {_RERUN}")
        return sizes.pop() if sizes else None

    def set_epoch(self, epoch: int) -> None:
        """Augment as for ``epoch``; the trainer calls this before each epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.shard)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} crops")
        crop = np.array(self._map(int(self.shard[index]))[self.index_in_shard[index]], copy=True)
        if self.augment is not None:
            crop = augment_crop(crop, self.augment, epoch_rng(self.seed, self.epoch, index))
        return torch.from_numpy(crop)

    def _map(self, shard: int) -> np.ndarray:
        if shard not in self._maps:
            path = shard_path(self.shards_dir, shard)
            if not path.is_file():
                raise FileNotFoundError(f"shard {path} not found; {_RERUN}")
            self._maps[shard] = np.load(path, mmap_mode="r")
        return self._maps[shard]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}  # workers open their own maps; never pickle mapped data
