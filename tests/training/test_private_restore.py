"""Every worker restores from its own copy of a remote checkpoint (no shared, re-downloaded directory)."""

from __future__ import annotations

import os
from pathlib import Path

import ray.train

from services import storage
from training.worker import private_checkpoint_dir


def _upload_checkpoint(moto_s3, local: Path, name: str) -> ray.train.Checkpoint:
    fs, root = storage.resolve(f"s3://{moto_s3['bucket']}/{name}", moto_s3["endpoint"])
    for path in local.iterdir():
        fs.put_file(str(path), f"{root}/{path.name}")
    return ray.train.Checkpoint(root, filesystem=storage.arrow_filesystem(fs))


def test_two_readers_of_a_remote_checkpoint_get_separate_complete_copies(moto_s3, tmp_path):
    payload = os.urandom(200_000)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "checkpoint.pth.tar").write_bytes(payload)
    checkpoint = _upload_checkpoint(moto_s3, tmp_path / "ckpt", "private-restore")
    with private_checkpoint_dir(checkpoint) as first, private_checkpoint_dir(checkpoint) as second:
        assert first != second  # Checkpoint.as_directory would hand both the same per-node directory
        for d in (first, second):
            assert (Path(d) / "checkpoint.pth.tar").read_bytes() == payload
    assert not Path(first).exists() and not Path(second).exists()


def test_a_local_checkpoint_is_read_in_place(tmp_path):
    (tmp_path / "checkpoint.pth.tar").write_bytes(b"x")
    with private_checkpoint_dir(ray.train.Checkpoint(str(tmp_path))) as d:
        assert Path(d) == tmp_path
    assert (tmp_path / "checkpoint.pth.tar").exists()
