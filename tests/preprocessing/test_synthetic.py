"""The built-in synthetic set: deterministic .mp4 files, metadata, visible articulated motion, distinct ids."""

from __future__ import annotations

import csv
import os

import numpy as np

from preprocessing.synthetic import (
    generate_synthetic_videos,
    make_identity,
    render_video,
    write_synthetic_shards,
)
from services.video_read import probe_video, read_frames
from tests.conftest import shard_clips


def test_files_metadata_and_split(synthetic_dir):
    rows = list(csv.DictReader(open(synthetic_dir / "metadata.csv")))
    assert [r["video_id"] for r in rows] == [f"synth{i:04d}" for i in range(6)]
    assert {r["person_id"] for r in rows} == {"id00", "id01", "id02", "id03"}
    assert {r["split"] for r in rows} == {"train", "test"}
    info = probe_video(synthetic_dir / "synth0000.mp4")
    assert (info.width, info.height, info.num_frames, info.fps) == (64, 64, 24, 25.0)


def test_deterministic_for_a_seed(tmp_path):
    first = generate_synthetic_videos(tmp_path / "a", num_videos=2, size=64, num_frames=12, seed=0)
    again = generate_synthetic_videos(tmp_path / "b", num_videos=2, size=64, num_frames=12, seed=0)
    other = generate_synthetic_videos(tmp_path / "c", num_videos=1, size=64, num_frames=12, seed=1)
    for p, q in zip(first, again):  # the files are byte-identical for the same seed
        assert p.read_bytes() == q.read_bytes()
    assert not np.array_equal(read_frames(first[0]), read_frames(other[0]))


def test_reruns_are_byte_identical(tmp_path):
    # x264's SIMD lookahead reads memory it never wrote: on one thread this clip still came out 2-3 ways in
    # 20 encodes once freed heap held random bytes. Refill it before every run so such a read shows.
    runs = []
    for k in range(20):
        junk = [os.urandom(4096 * j) for j in range(1, 64)]
        del junk
        runs.append(generate_synthetic_videos(tmp_path / f"r{k}", num_videos=1, size=64, num_frames=12, seed=0)[0])
    assert len({p.read_bytes() for p in runs}) == 1


def test_bodies_move_and_cover_the_frame():
    rng = np.random.default_rng(3)
    frames = render_video(make_identity(rng, 0.2), rng, 64, 24, 25.0).astype(int)  # T×H×W×3
    background = np.median(frames, axis=0)  # the background is static; the body moves
    moving = np.abs(frames - background).sum(-1) > 60  # T×H×W
    cover = moving.mean(axis=(1, 2))
    assert cover.min() > 0.05  # a good part of the frame is body, in every frame
    assert np.abs(np.diff(frames, axis=0)).mean() > 2  # and it moves


def test_identities_differ(synthetic_dir):
    a = read_frames(synthetic_dir / "synth0000.mp4", 1)[0].astype(int)  # id00
    b = read_frames(synthetic_dir / "synth0001.mp4", 1)[0].astype(int)  # id01
    assert np.abs(a - b).mean() > 10
    rng = np.random.default_rng(0)
    id0, id1 = make_identity(rng, 0.0), make_identity(rng, 0.5)
    assert np.abs(id0.colors - id1.colors).max() > 0.3


def test_shards_hold_the_rendered_frames_losslessly_in_one_split(tmp_path):
    path = write_synthetic_shards(tmp_path, num_videos=3, size=32, num_frames=4, seed=7)
    assert path == tmp_path / "test-00007.parquet"  # one split: the shard file itself
    clips = list(shard_clips(str(path)))
    assert [c["clip_id"] for c in clips] == ["synth0000_000", "synth0001_000", "synth0002_000"]
    assert [c["person_id"] for c in clips] == ["id00", "id01", "id00"] and {c["split"] for c in clips} == {"test"}
    ident = make_identity(np.random.default_rng([7, 1, 1]), 0.5)  # clip 1: identity 1 of 2, hue 1/2
    np.testing.assert_array_equal(clips[1]["frames"], render_video(ident, np.random.default_rng([7, 2, 1]), 32, 4, 25.0))


def test_shards_split_every_nth_clip_into_test(tmp_path):
    root = write_synthetic_shards(tmp_path, num_videos=7, size=16, num_frames=2, frame_format="jpeg",
                                  num_identities=3, test_every=3)
    assert root == tmp_path and sorted(p.name for p in root.iterdir()) == ["test-00000.parquet", "train-00000.parquet"]
    test = [c["clip_id"] for c in shard_clips(str(root), split="test", columns=["clip_id"])]
    assert test == ["synth0002_000", "synth0005_000"]
    train = list(shard_clips(str(root), split="train"))
    assert len(train) == 5 and train[0]["frames"].shape == (2, 16, 16, 3)
