"""One DDP train step on two gloo workers (no Ray): the adversarial config keeps both workers' weights equal."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing as mp
import os
import socket
import threading

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from fomm.config.schema import load_config
from fomm.train_step import build_train_state, train_step
from training.loop import weights_fingerprint
from training.sync_bn import GlooSyncBatchNorm2d, convert_sync_batchnorm

pytestmark = pytest.mark.numeric


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, config_path: str, queue: mp.Queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        cfg = load_config(config_path)
        weights = dataclasses.replace(cfg.train_params.loss_weights, generator_gan=1, perceptual=(10, 10, 0, 0, 0))
        tp = dataclasses.replace(cfg.train_params, scales=(1, 0.5), loss_weights=weights)
        torch.manual_seed(0)  # the same initial weights on both workers
        state = build_train_state(cfg.model_params, tp)
        before = weights_fingerprint({"g": state.generator, "k": state.kp_detector, "d": state.discriminator})
        generator_full = DDP(convert_sync_batchnorm(state.generator_full))
        discriminator_full = DDP(convert_sync_batchnorm(state.discriminator_full))
        synced = any(isinstance(m, GlooSyncBatchNorm2d) for m in state.generator.modules())
        torch.manual_seed(100 + rank)  # each worker its own batch and equivariance warp
        batch = {"source": torch.rand(1, 3, 64, 64), "driving": torch.rand(1, 3, 64, 64)}
        values, _ = train_step(state, batch, generator_full, discriminator_full)
        after = weights_fingerprint({"g": state.generator, "k": state.kp_detector, "d": state.discriminator})
        queue.put((rank, synced, values, before.numpy(), after.numpy()))
    finally:
        dist.destroy_process_group()


def test_adversarial_step_keeps_workers_identical(tiny_config_path):
    # fork is quick, but a forked child of a process with other threads (pytest-xdist's) can hang: spawn there
    ctx = mp.get_context("fork" if threading.active_count() == 1 else "spawn")
    queue, port = ctx.Queue(), _port()
    procs = [ctx.Process(target=_worker, args=(r, port, str(tiny_config_path), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted((queue.get(timeout=300) for _ in procs), key=lambda r: r[0])
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    (_, synced0, values0, before0, after0), (_, synced1, values1, before1, after1) = results
    assert synced0 and synced1
    assert {"perceptual", "gen_gan", "feature_matching", "disc_gan"} <= set(values0)
    assert all(math.isfinite(v) for v in [*values0.values(), *values1.values()])
    assert values0["perceptual"] != values1["perceptual"]  # different data on each worker …
    assert (before0 == before1).all() and (after0 == after1).all()  # … yet the same weights after the step
    assert (after0 != before0).any()
