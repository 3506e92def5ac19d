"""pipelines/preprocess.py against real local services: moto S3, and a job killed mid-run (`ray job submit` with
bad videos and a lost node: tests/e2e/test_node_loss.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from preprocessing import shards
from preprocessing.synthetic import generate_synthetic_videos
from tests.conftest import damaged_shards, shard_clips

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    generate_synthetic_videos(out, num_videos=10, size=64, num_frames=32, seed=0)
    return out


def job_env(repo_root: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(repo_root), "RAY_DEDUP_LOGS": "0"}


def test_s3_in_s3_out(moto_s3, ray_local, videos):
    import boto3

    from preprocessing.config import PreprocessConfig
    from preprocessing.ray_jobs import run_preprocess

    bucket = moto_s3["bucket"]
    s3 = boto3.client("s3", endpoint_url=moto_s3["endpoint"], region_name="us-east-1")
    for name in ["metadata.csv", "synth0000.mp4", "synth0001.mp4", "synth0002.mp4"]:
        s3.upload_file(str(videos / name), bucket, f"raw/{name}")
    s3.put_object(Bucket=bucket, Key="raw/broken.mp4", Body=b"not a video at all")
    cfg = PreprocessConfig(input=f"s3://{bucket}/raw", output=f"s3://{bucket}/ds", kind="none", size=32,
                           min_frames=8, workers=2)
    result = run_preprocess(cfg)
    assert result["manifest"] == f"s3://{bucket}/ds/_manifest.json"
    assert (result["num_clips"], result["num_errors"]) == (3, 1)
    clips = list(shard_clips(f"s3://{bucket}/ds"))
    assert sorted(c["video_id"] for c in clips) == ["synth0000", "synth0001", "synth0002"]
    assert all(c["frames"].shape == (32, 32, 32, 3) for c in clips)
    assert all(c["source_path"].startswith(f"s3://{bucket}/raw/") for c in clips)
    assert damaged_shards(f"s3://{bucket}/ds") == []
    (err,) = shards.read_errors(f"s3://{bucket}/ds")
    assert err["path"] == f"s3://{bucket}/raw/broken.mp4" and "not a readable video" in err["message"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ds/")["Contents"]}
    assert not any("/_work/" in k for k in keys), sorted(keys)  # work files removed after the commit
    again = run_preprocess(cfg)  # resuming a finished job: nothing to do, same answer
    assert (again["num_clips"], again["num_errors"]) == (3, 1)



def run_pipeline(repo_root: Path, ray_head: dict | None, inputs: Path, out: Path) -> subprocess.Popen:
    """On the session cluster, or in one process (None)."""
    cmd = [sys.executable, str(repo_root / "pipelines" / "preprocess.py"), "--input", str(inputs), "--output",
           str(out), "--kind", "none", "--size", "64", "--min-frames", "8", "--workers", "1", "--shard-mb", "0.3",
           "--frame-format", "png", *(["--ray-address", ray_head["address"]] if ray_head else ["--no-ray"])]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=job_env(repo_root), start_new_session=True)


def problems(log: str) -> str:
    """The lines of a run's output that are not Ray's progress logging."""
    return "\n".join(line for line in log.splitlines() if " INFO " not in line)[-6000:]


def test_killed_job_resumes_to_identical_shards(ray_head, repo_root, videos, tmp_path):
    full = run_pipeline(repo_root, None, videos, tmp_path / "full")  # the reference: one process, no Ray
    log = full.communicate(timeout=400)[0]
    assert full.returncode == 0, problems(log)

    killed = run_pipeline(repo_root, ray_head, videos, tmp_path / "resumed")
    parts = tmp_path / "resumed" / "_work" / "parts"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(parts.glob("*.parquet"))) < 3 and killed.poll() is None:
        time.sleep(0.02)
    os.killpg(killed.pid, signal.SIGKILL)  # the driver and anything it started
    killed.wait(timeout=60)
    done_before = len(list(parts.glob("*.parquet")))
    assert 3 <= done_before < 10, "the job was not killed halfway"
    assert not (tmp_path / "resumed" / "_manifest.json").exists()

    resumed = run_pipeline(repo_root, ray_head, videos, tmp_path / "resumed")
    log = resumed.communicate(timeout=400)[0]
    assert resumed.returncode == 0, problems(log)
    a = json.loads((tmp_path / "full" / "_manifest.json").read_text())
    b = json.loads((tmp_path / "resumed" / "_manifest.json").read_text())
    assert len(a["shards"]) > 1
    assert [(s["file"], s["rows"], s["sha256"]) for s in a["shards"]] == \
           [(s["file"], s["rows"], s["sha256"]) for s in b["shards"]]
    listed = sorted(p.relative_to(tmp_path / "resumed").as_posix()
                    for p in (tmp_path / "resumed" / "shards").rglob("*") if p.is_file())
    assert listed == sorted(s["file"] for s in b["shards"])  # no duplicate or half-written shard files
    assert [c["clip_id"] for c in shard_clips(str(tmp_path / "resumed"))] == \
           [c["clip_id"] for c in shard_clips(str(tmp_path / "full"))]
