"""Convolutional building blocks and the hourglass (U-Net) shared by the detector and the generator; anti-aliased
downsampling (gaussian blur, then subsample) and the image pyramid of the losses (Eq. 9); the inference-only
rewrite of a trained model's blocks: batch norm folded into the convolution before it (eval mode)."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ResBlock2d(nn.Module):
    """Pre-activation residual block: BN → ReLU → conv 3×3 → BN → ReLU → conv 3×3, plus the input."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size=3, padding=1)
        self.norm1 = nn.BatchNorm2d(in_features, affine=True)
        self.norm2 = nn.BatchNorm2d(in_features, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class _ConvNorm(nn.Module):
    """A conv (`conv`) followed by batch norm (`norm`): the original key names of every block below."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple = 3,
                 padding: int | tuple = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)


class UpBlock2d(_ConvNorm):
    """Nearest 2× upsampling → conv → BN → ReLU."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2))))


class DownBlock2d(_ConvNorm):
    """Conv → BN → ReLU → 2×2 average pooling."""

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), kernel_size=(2, 2))


class SameBlock2d(_ConvNorm):
    """Conv → BN → ReLU at the same resolution."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(x)))


def level_features(block_expansion: int, max_features: int, level: int) -> int:
    """Channels at hourglass level i: min(M, E·2^i)."""
    return min(max_features, block_expansion * (2**level))


class Hourglass(nn.Module):
    """U-Net: DownBlocks keeping each output as a skip, then UpBlocks from the deepest level, each concatenated
    with the skip of its resolution; E + C channels out at the input resolution (size divisible by 2^num_blocks)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256) -> None:
        super().__init__()
        features = [in_features] + [level_features(block_expansion, max_features, i + 1) for i in range(num_blocks)]
        down = [DownBlock2d(features[i], features[i + 1]) for i in range(num_blocks)]
        up = [UpBlock2d((1 if i == num_blocks - 1 else 2) * features[i + 1],
                        level_features(block_expansion, max_features, i)) for i in reversed(range(num_blocks))]
        # ModuleDicts keep the original key names (encoder.down_blocks.N, decoder.up_blocks.N)
        self.encoder = nn.ModuleDict({"down_blocks": nn.ModuleList(down)})
        self.decoder = nn.ModuleDict({"up_blocks": nn.ModuleList(up)})
        self.out_filters = block_expansion + in_features

    def forward(self, x: Tensor) -> Tensor:
        skips = [x]
        for block in self.encoder["down_blocks"]:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.decoder["up_blocks"]:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


def gaussian_kernel(scale: float) -> Tensor:
    """Normalised 2-D gaussian, sigma = (1/scale - 1)/2, size 2·round(4·sigma) + 1 (odd), in float32 as the
    original's (a float64 model holds it cast, as the original's does: float64 runs match to the last bits).  # k×k"""
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    coords = torch.arange(size, dtype=torch.float32)
    mean = (size - 1) / 2
    one_d = torch.exp(-((coords - mean) ** 2) / (2 * sigma**2))
    kernel = one_d.view(-1, 1) * one_d.view(1, -1)
    return kernel / kernel.sum()


class AntiAliasInterpolation2d(nn.Module):
    """Blur with a gaussian (buffer `weight`, C×1×k×k), then keep every (1/scale)-th pixel; identity at scale 1."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        kernel = gaussian_kernel(scale) if scale != 1 else torch.ones(1, 1)  # k×k
        self.register_buffer("weight", kernel.repeat(channels, 1, 1, 1))
        self.pad = kernel.shape[0] // 2
        inv = 1 / scale
        self.stride = round(inv) if math.isclose(inv, round(inv)) else None

    def forward(self, x: Tensor) -> Tensor:  # B×C×H×W → B×C×(H·s)×(W·s)
        if self.scale == 1:
            return x
        # contiguous: oneDNN's depthwise conv with a large kernel is very slow on channels_last input
        out = F.pad(x.contiguous(), (self.pad,) * 4)
        # an integer 1/scale blurs only the pixels kept: the strided conv is the blur[::s, ::s]
        out = F.conv2d(out, weight=self.weight.to(out.dtype), groups=len(self.weight), stride=self.stride or 1)
        return out if self.stride else F.interpolate(out, scale_factor=(self.scale, self.scale))


class ImagePyramid(nn.Module):
    """Anti-aliased copies of an image at several scales: {'prediction_<scale>': B×C×h×w}."""

    def __init__(self, scales: tuple[float, ...] | list[float], num_channels: int) -> None:
        super().__init__()
        self.downs = nn.ModuleDict({str(s).replace(".", "-"): AntiAliasInterpolation2d(num_channels, s)
                                    for s in scales})  # keys as the original's: '1', '0-5', …

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"prediction_" + key.replace("-", "."): down(x) for key, down in self.downs.items()}


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
