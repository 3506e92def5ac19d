"""Convolutional building blocks and the hourglass (U-Net) shared by the detector and the generator."""

from __future__ import annotations

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
