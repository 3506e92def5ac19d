"""Anti-aliased downsampling (gaussian blur, then subsample) and the image pyramid of the losses (Eq. 9)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
