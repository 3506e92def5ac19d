"""Synchronised batch norm on CPU/gloo: two workers normalise exactly as one process over the joint batch."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import threading

import pytest
import torch
import torch.distributed as dist
from torch import nn

from training.sync_bn import GlooSyncBatchNorm2d, convert_sync_batchnorm

pytestmark = pytest.mark.numeric


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs() -> tuple[torch.Tensor, torch.Tensor, dict]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 5, 4, generator=g) * 3 + 1  # the joint batch; rank r holds rows 3r..3r+2
    c = torch.randn(6, 3, 5, 4, generator=g)  # loss weights, so that gradients are not trivial
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    return x, c, bn.state_dict()


def _worker(rank: int, port: int, queue: mp.Queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        x, c, state = _inputs()
        model = nn.Sequential(nn.BatchNorm2d(3))
        model[0].load_state_dict(state)
        model = convert_sync_batchnorm(model, "cpu")
        xs = x[3 * rank:3 * rank + 3].clone().requires_grad_(True)
        out = model(xs)
        (out * c[3 * rank:3 * rank + 3]).sum().backward()
        grads = torch.cat([model[0].weight.grad, model[0].bias.grad])
        dist.all_reduce(grads)
        # numpy, not tensors: torch would share tensor memory through fds that die with this process
        queue.put((rank, type(model[0]).__name__, *(t.detach().numpy().copy() for t in (
            out, xs.grad, grads, model[0].running_mean, model[0].running_var))))
    finally:
        dist.destroy_process_group()


def test_two_workers_match_one_process_over_the_joint_batch():
    x, c, state = _inputs()
    bn = nn.BatchNorm2d(3)
    bn.load_state_dict(state)
    xr = x.clone().requires_grad_(True)
    out = bn(xr)
    (out * c).sum().backward()
    want_grads = torch.cat([bn.weight.grad, bn.bias.grad])

    # fork is quick, but a forked child of a process with other threads (pytest-xdist's, CUDA autograd's) can hang
    ctx = mp.get_context("fork" if threading.active_count() == 1 and not torch.cuda.is_initialized() else "spawn")
    queue, port = ctx.Queue(), _port()
    procs = [ctx.Process(target=_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for rank, kind, *arrays in results:
        assert kind == "GlooSyncBatchNorm2d"
        got, grad_x, grads, running_mean, running_var = (torch.from_numpy(a) for a in arrays)
        rows = slice(3 * rank, 3 * rank + 3)
        torch.testing.assert_close(got, out[rows].detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(grad_x, xr.grad[rows], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(grads, want_grads, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(running_mean, bn.running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(running_var, bn.running_var, atol=1e-6, rtol=1e-5)


def test_conversion_keeps_parameters_buffers_and_keys():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    weight, mean = model[1].weight, model[1].running_mean
    keys = list(model.state_dict())
    converted = convert_sync_batchnorm(model, "cpu")
    assert converted is model  # converted in place: references held elsewhere stay valid
    assert isinstance(model[1], GlooSyncBatchNorm2d) and isinstance(model[2][0], GlooSyncBatchNorm2d)
    assert model[1].weight is weight and model[1].running_mean is mean
    assert list(model.state_dict()) == keys


def test_single_process_is_plain_batch_norm():
    x = torch.randn(4, 2, 3, 3)
    bn = nn.BatchNorm2d(2)
    sync = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(2)), "cpu")
    torch.testing.assert_close(sync(x), bn(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch's SyncBatchNorm is for CUDA devices")
def test_gpu_uses_torch_sync_batch_norm():
    model = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(2)), "cuda")
    assert isinstance(model[0], nn.SyncBatchNorm)
