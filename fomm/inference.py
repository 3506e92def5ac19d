"""Inference-only rewrite of a trained model: batch norm folded into the convolution before it (eval mode)."""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from fomm.blocks import ResBlock2d, _ConvNorm


class FoldedBatchNorm2d(nn.BatchNorm2d):
    """A batch norm whose statistics live in the conv before it: passes its input on (inference only). Its state
    is the identity, so a folded model's checkpoint loads into a plain one; a state dict loaded is folded again."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            raise RuntimeError("a folded batch norm is for inference only (its statistics are in the conv)")
        return x


@torch.no_grad()
def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d, incompatible_keys: object = None) -> None:
    """conv ← norm ∘ conv on running statistics: w·γ/σ, (b − μ)·γ/σ + β, σ = sqrt(var + eps); then the norm's
    state ← the identity (mean 0, variance 1 − eps, weight 1, bias 0). Also the norm's post-load hook."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)  # C_out
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias.copy_((conv.bias - norm.running_mean) * scale + norm.bias)  # every conv of blocks.py has a bias
    norm.weight.fill_(1)
    norm.bias.zero_()
    norm.running_mean.zero_()
    norm.running_var.fill_(1 - norm.eps)


@torch.no_grad()
def fold_batch_norm(module: nn.Module) -> nn.Module:
    """In place, eval mode: each conv → batch norm pair computes as one conv (1e-6 relative); returns `module`. In
    a residual block the second norm folds into the first conv; the first (before a ReLU) stays."""
    if module.training:
        raise ValueError("fold_batch_norm needs a module in eval mode (running statistics)")
    for block in module.modules():
        pairs = ((block.conv, block.norm) if isinstance(block, _ConvNorm)
                 else (block.conv1, block.norm2) if isinstance(block, ResBlock2d) else None)
        if pairs is not None and type(pairs[1]) is nn.BatchNorm2d:
            conv, norm = pairs
            _fold(conv, norm)
            norm.__class__ = FoldedBatchNorm2d
            # after this norm loads (its conv loaded before it), each later state dict is folded the same way
            norm.register_load_state_dict_post_hook(functools.partial(_fold, conv))
    return module
