"""Frame pairs read back from shards: only the sampled frames, in time order, per the epoch sampler."""

from __future__ import annotations

import numpy as np

from preprocessing import dataset_writer as dw
from preprocessing import shards
from preprocessing.config import PreprocessConfig
from preprocessing.frame_pairs import iter_frame_pairs, load_split


def test_pairs_come_from_the_right_frames(synthetic_dir, tmp_path):
    out = tmp_path / "ds"
    dw.run_local(PreprocessConfig(input=str(synthetic_dir), output=str(out), kind="none", size=32, min_frames=8,
                                  frame_format="png"))
    clips = {c.clip_id: c for c in shards.read_clips(str(out), split="train")}
    pairs = list(iter_frame_pairs(str(out), split="train", num_repeats=3, seed=1))
    assert len(pairs) == 3 * len(clips) and len(load_split(str(out), "train")) == len(clips)
    for p in pairs:
        i, j = p["frame_ids"]
        assert i <= j
        np.testing.assert_array_equal(p["source"], clips[p["clip_id"]].frames[i])
        np.testing.assert_array_equal(p["driving"], clips[p["clip_id"]].frames[j])
    again = [p["frame_ids"] for p in iter_frame_pairs(str(out), split="train", num_repeats=3, seed=1)]
    assert again == [p["frame_ids"] for p in pairs]  # deterministic per (seed, epoch)
    by_id = list(iter_frame_pairs(str(out), split="train", num_repeats=2, id_sampling=True, augment={}))
    assert len(by_id) == 2 * len({c.person_id for c in clips.values()})
    assert by_id[0]["source"].shape == (32, 32, 3)
