"""A worker node lost mid-job: `ray job submit` of pipelines/preprocess.py on the session cluster, over videos
among which two are bad (one cut short, one without a frame), while one worker node's whole process group is
SIGKILLed; the dataset, its error table included, equals a one-process run's, byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from preprocessing import shards
from preprocessing.synthetic import generate_synthetic_videos
from services.video_read import read_frames
from tests.conftest import damaged_shards, shard_clips

pytestmark = pytest.mark.ray
BIN = Path(sys.executable).parent
NUM_VIDEOS = 10  # good ones; and two bad


def preprocess_args(inputs: Path, out: Path) -> list[str]:
    return ["pipelines/preprocess.py", "--input", str(inputs), "--output", str(out), "--kind", "none", "--size", "64",
            "--min-frames", "8", "--shard-mb", "0.3"]


def submit(dashboard: str, repo_root: Path, env: dict, sid: str, args: list[str]) -> subprocess.Popen:
    cmd = [str(BIN / "ray"), "job", "submit", "--address", dashboard, "--submission-id", sid, "--working-dir",
           str(repo_root), "--", sys.executable, *args, "--workers", "2"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def listed_files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in (out / "shards").rglob("*") if p.is_file())


def test_preprocess_job_survives_a_lost_worker_node(ray_head, repo_root, tmp_path, corrupt_video,
                                                    zero_frame_video) -> None:
    cluster = ray_head["cluster"]
    inputs = tmp_path / "raw"
    generate_synthetic_videos(inputs, num_videos=NUM_VIDEOS, size=64, num_frames=32, seed=3)
    shutil.copy(corrupt_video, inputs / "corrupt.mp4")
    shutil.copy(zero_frame_video, inputs / "zero.mp4")
    env = {**os.environ, "PYTHONPATH": str(repo_root), "RAY_DEDUP_LOGS": "0"}
    reference = subprocess.run([sys.executable, *preprocess_args(inputs, tmp_path / "one"), "--no-ray"], env=env,
                               cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stdout[-3000:] + reference.stderr[-3000:]

    out = tmp_path / "cluster"
    parts = out / "_work" / "parts"
    submitted = time.time()
    job = submit(cluster.dashboard, repo_root, env, "node-loss-1", preprocess_args(inputs, out))
    deadline = time.time() + 300
    while time.time() < deadline and len(list(parts.glob("*.parquet"))) < 2 and job.poll() is None:
        time.sleep(0.05)
    done_before = len(list(parts.glob("*.parquet")))
    started = time.time()
    cluster.kill_worker("node_a")  # the raylet, its agents and its workers: a machine gone
    try:
        log = job.communicate(timeout=400)[0]
        finished = time.time()
        attempts = 1
        if job.returncode != 0:  # the job may fail with the node: a plain resubmit finishes it
            again = submit(cluster.dashboard, repo_root, env, "node-loss-2", preprocess_args(inputs, out))
            log += again.communicate(timeout=400)[0]
            finished, attempts = time.time(), 2
            assert again.returncode == 0, log[-6000:]
    finally:
        cluster.start_worker("node_a")  # later tests see two worker nodes again
        cluster.wait_workers()
    print(f"node loss: killed {started - submitted:.1f}s after the submission, with {done_before}/{NUM_VIDEOS} "
          f"videos done; {attempts} submission(s), {finished - started:.1f}s from the kill to the dataset")
    assert 2 <= done_before < NUM_VIDEOS, "the node was not killed mid-job"
    assert f"manifest: {out}/_manifest.json" in log and f"errors: {out}/errors.parquet (2 failed videos)" in log

    a = json.loads((tmp_path / "one" / "_manifest.json").read_text())
    b = json.loads((out / "_manifest.json").read_text())
    assert len(a["shards"]) > 1
    assert [(s["file"], s["rows"], s["sha256"]) for s in a["shards"]] == \
           [(s["file"], s["rows"], s["sha256"]) for s in b["shards"]]
    assert listed_files(out) == sorted(s["file"] for s in b["shards"])  # no duplicate or half-written shard
    assert damaged_shards(str(out)) == []
    assert not (out / "_work").exists()
    clips = [c["clip_id"] for c in shard_clips(str(out), columns=["clip_id"])]
    assert len(clips) == len(set(clips)) == b["totals"]["clips"] > 0
    assert clips == [c["clip_id"] for c in shard_clips(str(tmp_path / "one"), columns=["clip_id"])]
    # the bad videos' error rows, and none for the lost node
    assert {e["video_id"]: e["stage"] for e in shards.read_errors(str(out))} == {"corrupt": "decode", "zero": "probe"}
    assert shards.read_errors(str(out)) == shards.read_errors(str(tmp_path / "one")) and b["totals"]["errors"] == 2
    clip = next(c for c in shard_clips(str(out)) if c["video_id"] == "synth0002")
    assert clip["frames"].shape == (32, 64, 64, 3)
    assert np.abs(clip["frames"].astype(int) - read_frames(inputs / "synth0002.mp4")).mean() < 3  # JPEG q95
