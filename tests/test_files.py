"""Atomic writes: a failed write keeps the previous file and leaves no temporary file behind."""

import errno

import pytest
import torch

from seqtrain.files import atomic_write
from seqtrain.training.checkpoint import FORMAT, MARKER, load_checkpoint, save_checkpoint


def test_a_completed_write_replaces_the_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with atomic_write(target) as temporary:
        assert temporary.parent == tmp_path and temporary.exists() and target.read_bytes() == b"old"
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    target = tmp_path / "f.bin"
    with atomic_write(target) as first, atomic_write(target) as second:
        assert first != second
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    assert target.read_bytes() == b"first"  # the last to finish wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_failed_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"marker": MARKER, "format": FORMAT, "epoch": 1})

    def disk_full(payload, target):
        open(target, "wb").write(b"half a checkpo")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"marker": MARKER, "format": FORMAT, "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
