"""A short version of the learning benchmark: the demo config, fed by the training data path, learns.

benchmarks/bench_learning.py runs the full figure (15 minutes, one worker with every core; goal ≥ 30% below copy-the-source).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fomm.config.schema import load_config
from fomm.train_step import build_train_state, train_step
from preprocessing import shards
from preprocessing.shard_set import ShardSet
from training import data
from training.loop import to_model_batch, validate

STEPS = 40


@pytest.mark.slow
def test_demo_config_reconstruction_improves_within_a_few_dozen_steps(repo_root, synthetic_shards_64):
    cfg = load_config(repo_root / "configs" / "demo-64.yaml")
    torch.manual_seed(0)
    state = build_train_state(cfg.model_params, cfg.train_params)
    root = str(synthetic_shards_64)
    index = data.clip_index(ShardSet.open(root), "train")
    spec = data.PairSpec.from_config(cfg, index)
    train = shards.read_table(f"{root}/train-00000.parquet", columns=data.READ_COLUMNS)
    held_out = shards.read_table(f"{root}/test-00000.parquet", columns=data.READ_COLUMNS)
    val = [data.clips_to_val_frames(held_out, spec.frame_shape, 8)]

    before = validate(state.kp_detector, state.generator, val)
    rng = np.random.default_rng(0)
    pairs = data.clips_to_pairs(train, spec, rng)  # one epoch: every clip num_repeats times
    order = rng.permutation(len(pairs["source"]))
    losses = []
    for step in range(STEPS):
        take = order[(np.arange(cfg.train_params.batch_size) + step * cfg.train_params.batch_size) % len(order)]
        batch = to_model_batch({k: torch.from_numpy(v[take]) for k, v in pairs.items()})
        values, _ = train_step(state, batch)
        losses.append(values["total"])
    after = validate(state.kp_detector, state.generator, val)

    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5])
    # the untrained generator paints grey; a few dozen steps already reconstruct much of each frame
    assert after["val_l1"] < 0.75 * before["val_l1"], (before, after)
    assert before["val_l1_copy_source"] == after["val_l1_copy_source"] > 0
