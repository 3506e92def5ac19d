"""Fixtures for training tests: small synthetic clip shards written through preprocessing's public API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from preprocessing import shards
from preprocessing.synthetic import make_identity, render_video


def write_synthetic_shards(root: Path, num_videos: int = 8, size: int = 32, num_frames: int = 12,
                           num_identities: int = 2, test_every: int = 4, seed: int = 0) -> Path:
    """One shard per split of synthetic bodies; every `test_every`-th video is held out (split 'test')."""
    identities = [make_identity(np.random.default_rng([seed, 1, i]), i / num_identities)
                  for i in range(num_identities)]
    records: dict[str, list[shards.ClipRecord]] = {"train": [], "test": []}
    for v in range(num_videos):
        frames = render_video(identities[v % num_identities], np.random.default_rng([seed, 2, v]), size,
                              num_frames, 25.0)
        split = "test" if v % test_every == test_every - 1 else "train"
        records[split].append(shards.ClipRecord(
            video_id=f"v{v:03d}", clip_id=f"v{v:03d}-0", person_id=f"id{v % num_identities}", split=split,
            fps=25.0, height=size, width=size, start_frame=0, end_frame=num_frames, crop_box=(0, 0, size, size),
            source_path=f"v{v:03d}.mp4", source_height=size, source_width=size,
            frames=shards.encode_frames(frames)))
    root.mkdir(parents=True, exist_ok=True)
    for split, recs in records.items():
        if recs:
            shards.write_table_atomic(shards.records_to_table(recs), str(root / f"{split}-00000.parquet"))
    return root


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory) -> Path:
    """8 clips of 12 frames at 32×32, 2 identities; clips 3 and 7 held out."""
    return write_synthetic_shards(tmp_path_factory.mktemp("shards"))


@pytest.fixture(scope="session")
def synthetic_shards_64(tmp_path_factory) -> Path:
    """12 clips of 16 frames at 64×64 (the demo size), 3 identities; every third clip held out."""
    return write_synthetic_shards(tmp_path_factory.mktemp("shards64"), num_videos=12, size=64, num_frames=16,
                                  num_identities=3, test_every=3)
