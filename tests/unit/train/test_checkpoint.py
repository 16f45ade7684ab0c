import os
import random

import numpy as np
import pytest
import torch

from liveness.train.checkpoint import (
    CHECKPOINT_VERSION,
    REQUIRED_KEYS,
    CheckpointError,
    atomic_torch_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)


class Unsafe:
    """A custom class: loading it needs full unpickling, which weights_only forbids."""


def _minimal_checkpoint():
    payload = {key: {} for key in REQUIRED_KEYS}
    payload.update(version=CHECKPOINT_VERSION, epoch=0, step=0, batch_in_epoch=0, rng=capture_rng_state())
    return payload


class TestAtomicSave:
    def test_writes_and_leaves_no_temporary_files(self, tmp_path):
        path = tmp_path / "sub" / "last.pt"
        atomic_torch_save(_minimal_checkpoint(), path)
        assert load_checkpoint(path)["step"] == 0
        assert [p.name for p in path.parent.iterdir()] == ["last.pt"]

    def test_failed_write_keeps_previous_checkpoint(self, tmp_path, monkeypatch):
        path = tmp_path / "last.pt"
        first = _minimal_checkpoint()
        atomic_torch_save(first, path)
        second = _minimal_checkpoint() | {"step": 99}

        def broken_replace(*args):
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(OSError):
            atomic_torch_save(second, path)
        monkeypatch.undo()
        assert load_checkpoint(path)["step"] == 0
        assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class TestLoad:
    def test_truncated_checkpoint_is_a_clear_error(self, tmp_path):
        path = tmp_path / "last.pt"
        atomic_torch_save(_minimal_checkpoint() | {"generator": {"w": torch.randn(1000)}}, path)
        path.write_bytes(path.read_bytes()[:-200])
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            load_checkpoint(path)

    def test_garbage_is_a_clear_error(self, tmp_path):
        path = tmp_path / "last.pt"
        path.write_bytes(b"\x00" * 64)
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            load_checkpoint(path)

    def test_loading_is_weights_only(self, tmp_path):
        path = tmp_path / "last.pt"
        torch.save(_minimal_checkpoint() | {"generator": Unsafe()}, path)
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            load_checkpoint(path)

    def test_foreign_dict_is_rejected(self, tmp_path):
        path = tmp_path / "last.pt"
        torch.save({"weights": torch.zeros(1)}, path)
        with pytest.raises(CheckpointError, match="missing"):
            load_checkpoint(path)

    @pytest.mark.parametrize("version", [1, CHECKPOINT_VERSION + 1], ids=["older", "newer"])
    def test_other_version_is_rejected(self, tmp_path, version):
        path = tmp_path / "last.pt"
        torch.save(_minimal_checkpoint() | {"version": version}, path)
        with pytest.raises(CheckpointError, match=f"version {version};.*--no-resume"):
            load_checkpoint(path)

    def test_missing_file(self, tmp_path):
        with pytest.raises(CheckpointError, match="does not exist"):
            load_checkpoint(tmp_path / "none.pt")


class TestRngState:
    def test_round_trip_through_a_weights_only_checkpoint(self, tmp_path):
        torch.manual_seed(5)
        np.random.seed(5)
        random.seed(5)
        torch.randn(3), np.random.randn(3), random.random()
        path = tmp_path / "last.pt"
        atomic_torch_save(_minimal_checkpoint(), path)
        expected = (torch.randn(4), np.random.randn(4), [random.random() for _ in range(4)])
        torch.manual_seed(0), np.random.seed(0), random.seed(0)
        restore_rng_state(load_checkpoint(path)["rng"])
        assert torch.equal(torch.randn(4), expected[0])
        assert np.array_equal(np.random.randn(4), expected[1])
        assert [random.random() for _ in range(4)] == expected[2]
