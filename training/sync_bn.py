"""Batch norm synchronised across DDP workers as in the original: torch's SyncBatchNorm on GPU, ours on CPU.

torch's `nn.SyncBatchNorm` refuses CPU tensors (torch 2.13), so `GlooSyncBatchNorm2d` computes the same with the
per-channel sums all-reduced by a differentiable all-reduce: gradients flow through the global mean and variance
as in SyncBatchNorm. Both keep BatchNorm2d's state-dict keys, so checkpoints stay in the original format.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world_size() -> int:
    """DDP workers in the process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllReduceSum(torch.autograd.Function):
    """Σ over workers, differentiable."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: ANN001
        out = x.clone()
        dist.all_reduce(out)
        return out

    backward = forward  # the gradient of a sum over workers is the sum of their gradients


class GlooSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the batches of every worker (any backend, CPU included)."""

    def forward(self, x: Tensor) -> Tensor:  # x: B×C×H×W
        if not self.training or world_size() == 1:
            return super().forward(x)
        c = x.shape[1]
        # one all-reduce of Σx, Σx² and the count (float64, so E[x²] − E[x]² does not cancel badly); its
        # backward is one more: two collectives per layer and step, as torch's SyncBatchNorm
        local = torch.cat([x.sum(dim=(0, 2, 3), dtype=torch.float64),
                           (x * x).sum(dim=(0, 2, 3), dtype=torch.float64),
                           x.new_full((1,), x.numel() / c, dtype=torch.float64)])
        totals = _AllReduceSum.apply(local)  # 2C+1
        n = totals[-1]
        mean = totals[:c] / n  # C
        var = (totals[c:2 * c] / n - mean * mean).clamp(min=0)  # C, biased (used to normalise)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - momentum).add_(mean.to(x.dtype), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.to(x.dtype), alpha=momentum)
        scale = torch.rsqrt(var + self.eps).to(x.dtype)  # C
        shift = (-mean).to(x.dtype) * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        return x * scale.view(1, c, 1, 1) + shift.view(1, c, 1, 1)


def convert_sync_batchnorm(module: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """Synchronise every batch norm of `module` across workers: SyncBatchNorm on GPU, ours elsewhere; in place
    (below the top module on GPU), so references held elsewhere (TrainState.generator, the optimisers') stay valid."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for layer in module.modules():  # the same object, class swapped: its Parameters and buffers stay shared
        if isinstance(layer, nn.BatchNorm2d):
            layer.__class__ = GlooSyncBatchNorm2d
    return module
