"""services.storage: local paths and URIs behind one API (S3 itself is exercised in tests/e2e against moto)."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys

import pytest

from services import s3_retries, storage
from services.errors import UserError


def test_resolve_once_per_process_and_pickle_without_secrets(tmp_path, monkeypatch):
    fs, p = storage.resolve(str(tmp_path / "a" / ".." / "b"))
    assert fs.protocol[0] == "file" and p.endswith("/b")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDPLAIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-never-pickled")
    fs, p = storage.resolve("s3://bucket/some/key/", endpoint="http://127.0.0.1:9")
    assert "s3" in fs.protocol and p == "bucket/some/key"
    assert storage.resolve("s3://other/x", endpoint="http://127.0.0.1:9")[0] is fs  # one filesystem per endpoint
    assert storage.resolve("s3://bucket/x", endpoint="http://127.0.0.1:8")[0] is not fs
    location = storage.Location("s3://bucket/some", "http://127.0.0.1:9")
    assert location.fs is fs and location.path("k") == "bucket/some/k" and location.uri("k") == "s3://bucket/some/k"
    for what in (fs, location, storage.arrow_filesystem(fs)):  # what a Ray task may receive
        blob = pickle.dumps(what)
        assert b"s3cr3t-never-pickled" not in blob and b"AKIDPLAIN" not in blob
    assert b"127.0.0.1:9" in pickle.dumps(fs)  # the endpoint and the retry settings travel
    clone = pickle.loads(pickle.dumps(fs))
    assert clone.config_kwargs["retries"] == {"max_attempts": storage.S3_MAX_ATTEMPTS, "mode": "standard"}
    monkeypatch.setenv("FOMM_S3_ENDPOINT", "http://127.0.0.1:7")
    assert storage.s3_endpoint() == "http://127.0.0.1:7" and storage.s3_endpoint("http://x:1") == "http://x:1"
    monkeypatch.setenv("FOMM_S3_MAX_ATTEMPTS", "0")
    with pytest.raises(ValueError, match=r"^\$FOMM_S3_MAX_ATTEMPTS: must be ≥ 1, got 0$"):
        storage.resolve("s3://bucket/x")


def test_an_id_becomes_one_file_name():
    """A clip id's '#', a path's '/' and a time's ':' would be a folder, a URL fragment or a Windows stream."""
    assert storage.safe_name("worst_id10283#yt/x:1.é-b.gif") == "worst_id10283_yt_x_1.é-b.gif"


def test_atomic_write_list_glob_and_copy(tmp_path):
    target = str(tmp_path / "d" / "e" / "f.bin")
    storage.write_bytes(target, b"abc")
    assert storage.read_bytes(target) == b"abc" and [p.name for p in (tmp_path / "d" / "e").iterdir()] == ["f.bin"]
    storage.write_bytes(str(tmp_path / "v" / ".half.mp4"), b"")  # a temporary: never listed
    for name in ("x.mp4", "sub/y.mp4", "sub/z.txt"):
        storage.write_bytes(str(tmp_path / "v" / name), b"")
    assert storage.list_files(str(tmp_path / "v"), "*.mp4") == [str(tmp_path / "v" / "sub" / "y.mp4"),
                                                                 str(tmp_path / "v" / "x.mp4")]
    assert storage.glob(str(tmp_path / "v" / "**" / "*.mp4")) == storage.list_files(str(tmp_path / "v"), "*.mp4")
    assert storage.glob(str(tmp_path / "v" / "*.mp4")) == [str(tmp_path / "v" / "x.mp4")]
    assert storage.glob(str(tmp_path / "v" / "s*")) == []  # folders are not files
    with storage.local_copy(target) as local:
        assert local == target
    assert storage.exists(target) and not storage.exists(str(tmp_path / "nope"))
    with pytest.raises(storage.StorageError, match="nope: cannot read"):
        storage.read_bytes(str(tmp_path / "nope"))


def test_pipeline_help(repo_root):
    out = subprocess.run([sys.executable, str(repo_root / "pipelines" / "preprocess.py"), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--input" in out.stdout and "--kind {face,person,none}" in out.stdout


def test_an_s3_path_without_credentials_is_one_line_before_any_job(no_s3_credentials, tmp_path, monkeypatch):
    import time

    from services.checks import storage_reachable
    from services.storage import StorageError

    for name in ("FOMM_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"^--data s3://bucket/shards: no S3 credentials \(set AWS_ACCESS_KEY_ID"):
        storage_reachable("--data", "s3://bucket/shards")
    assert time.monotonic() - started < 5
    storage_reachable("--data", str(tmp_path))  # a local path needs none


def test_counting_retries_counts_only_inside_its_block():
    """The S3 retries a block caused: botocore's retry handler calls note_retry (services.s3)."""
    s3_retries.note_retry()  # before: not counted
    with s3_retries.counting_retries() as retries:
        s3_retries.note_retry()
        assert retries.count == 1
        s3_retries.note_retry()
    s3_retries.note_retry()  # after: not counted
    assert retries.count == 2


@pytest.mark.parametrize(("path", "problem"), [
    ("gs://bucket/ds", "unsupported storage gs:// (expected a local path or s3://BUCKET/…)"),
    ("hdfs://nn/x", "unsupported storage hdfs:// (expected a local path or s3://BUCKET/…)"),
    ("s3://", "no bucket (expected s3://BUCKET/…)"),
    ("s3:///key", "no bucket (expected s3://BUCKET/…)"),
    ("s3:/bucket/ds", "a slash is missing after 's3:' (expected a local path or s3://BUCKET/…)"),
    ("S3:bucket", "a slash is missing after 'S3:' (expected a local path or s3://BUCKET/…)"),
    ("s3://bucket/key", None), ("file:///tmp/x", None), ("runs/a:b", None), ("/tmp/x", None), ("run:2/x", None),
])
def test_a_url_of_another_scheme_is_refused_not_taken_for_a_local_folder(tmp_path, monkeypatch, path, problem):
    """gs://b/x was a local folder 'gs:/b/x' (preprocess wrote a dataset there), and so was s3:/b/x, with exit 0:
    every resolve refuses them."""
    from services import checks
    from services.storage import StorageError, resolve, url_problem

    assert url_problem(path) == problem
    if problem is None:
        return
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match=f"^{re.escape(path)}: {re.escape(problem)}$"):
        resolve(path)
    with pytest.raises(UserError, match=f"^--output {re.escape(path)}: {re.escape(problem)}$"):
        checks.writable_storage("--output", path)
    assert list(tmp_path.iterdir()) == []


def test_an_s3_output_in_a_missing_bucket_is_refused_before_any_job(moto_s3):
    """A job never creates buckets: a misspelt one failed deep in Ray Data, or in Ray Train, with a traceback."""
    from services import checks
    from services.storage import StorageError

    checks.writable_storage("--output", f"s3://{moto_s3['bucket']}/ds")  # the bucket exists; the folder need not
    with pytest.raises(StorageError, match=r"^--storage s3://no-such-bucket/runs: no bucket 'no-such-bucket' there"):
        checks.writable_storage("--storage", "s3://no-such-bucket/runs")
