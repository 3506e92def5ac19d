"""Convolutional building blocks and the hourglass (U-Net) shared by the detector and the generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ResBlock2d(nn.Module):
    """Pre-activation residual block: BN → ReLU → conv → BN → ReLU → conv, plus the input."""

    def __init__(self, in_features: int, kernel_size: int | tuple = 3, padding: int | tuple = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(in_features, affine=True)
        self.norm2 = nn.BatchNorm2d(in_features, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class _ConvNorm(nn.Module):
    """A conv (`conv`) followed by batch norm (`norm`): the original key names of every block below."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple = 3,
                 padding: int | tuple = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups)
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


class Encoder(nn.Module):
    """Hourglass encoder: returns the input and every DownBlock's output (for the skips)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_features if i == 0 else level_features(block_expansion, max_features, i),
                        level_features(block_expansion, max_features, i + 1))
            for i in range(num_blocks)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: UpBlocks from the deepest level, each concatenated with the encoder skip."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            in_filters = (1 if i == num_blocks - 1 else 2) * level_features(block_expansion, max_features, i + 1)
            blocks.append(UpBlock2d(in_filters, level_features(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, skips: list[Tensor]) -> Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net: output has E + C channels at the input resolution (input size divisible by 2^num_blocks)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))
