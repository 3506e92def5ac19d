"""storage: local paths and URIs behind one API (S3 itself is exercised in tests/e2e against moto)."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.fs as pafs
import pytest

from preprocessing import storage


def test_resolve_local_and_s3(tmp_path, monkeypatch):
    fs, p = storage.resolve(str(tmp_path / "a" / ".." / "b"))
    assert isinstance(fs, pafs.LocalFileSystem) and p.endswith("/b")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    fs, p = storage.resolve("s3://bucket/some/key/", endpoint="http://127.0.0.1:9")
    assert isinstance(fs, pafs.S3FileSystem) and p == "bucket/some/key"
    assert "127.0.0.1:9" in repr(fs.__reduce__())  # the endpoint travels with the pickled filesystem
    monkeypatch.setenv("FOMM_S3_ENDPOINT", "http://127.0.0.1:7")
    assert storage.s3_endpoint() == "http://127.0.0.1:7" and storage.s3_endpoint("http://x:1") == "http://x:1"


def test_atomic_write_list_glob_and_copy(tmp_path):
    target = str(tmp_path / "d" / "e" / "f.bin")
    storage.write_bytes(target, b"abc")
    assert storage.read_bytes(target) == b"abc" and [p.name for p in (tmp_path / "d" / "e").iterdir()] == ["f.bin"]
    for name in ("x.mp4", "sub/y.mp4", "sub/z.txt"):
        storage.write_bytes(str(tmp_path / "v" / name), b"")
    assert storage.list_files(str(tmp_path / "v"), "*.mp4") == [str(tmp_path / "v" / "sub" / "y.mp4"),
                                                                 str(tmp_path / "v" / "x.mp4")]
    assert storage.glob(str(tmp_path / "v" / "**" / "*.mp4")) == storage.list_files(str(tmp_path / "v"), "*.mp4")
    assert storage.glob(str(tmp_path / "v" / "*.mp4")) == [str(tmp_path / "v" / "x.mp4")]
    with storage.local_copy(target) as local:
        assert local == target
    assert storage.exists(target) and not storage.exists(str(tmp_path / "nope"))
    with pytest.raises(storage.StorageError, match="nope: cannot read"):
        storage.read_bytes(str(tmp_path / "nope"))


def test_pipeline_help(repo_root):
    out = subprocess.run([sys.executable, str(repo_root / "pipelines" / "preprocess.py"), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--input" in out.stdout and "--kind {face,person,none}" in out.stdout
