"""Anti-aliased downsampling (gaussian blur, then subsample) and the image pyramid of the losses (Eq. 9)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def gaussian_kernel(scale: float) -> Tensor:
    """Normalised 2-D gaussian with sigma = (1/scale - 1)/2, size 2·round(4·sigma) + 1.  # k×k

    Computed in float32 as the original computes it: a float64 model holds this kernel cast (as does the original
    made float64 with `.double()`), so float64 runs match the original's float64 numbers to the last bits.
    """
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
        self.groups = channels
        if scale == 1:
            self.register_buffer("weight", torch.ones(channels, 1, 1, 1))
            self.ka = self.kb = 0
            return
        kernel = gaussian_kernel(scale)
        size = kernel.shape[0]
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        self.register_buffer("weight", kernel.view(1, 1, size, size).repeat(channels, 1, 1, 1))
        inv = 1 / scale
        self.int_inv_scale = round(inv) if math.isclose(inv, round(inv)) else None

    def forward(self, x: Tensor) -> Tensor:  # B×C×H×W → B×C×(H·s)×(W·s)
        if self.scale == 1:
            return x
        # contiguous: oneDNN's depthwise conv with a large kernel is very slow on channels_last input
        out = F.pad(x.contiguous(), (self.ka, self.kb, self.ka, self.kb))
        if self.int_inv_scale is not None:  # blur only the pixels kept: the strided conv is the blur[::s, ::s]
            return F.conv2d(out, weight=self.weight.to(out.dtype), groups=self.groups, stride=self.int_inv_scale)
        out = F.conv2d(out, weight=self.weight.to(out.dtype), groups=self.groups)
        return F.interpolate(out, scale_factor=(self.scale, self.scale))


class ImagePyramid(nn.Module):
    """Anti-aliased copies of an image at several scales: {'prediction_<scale>': B×C×h×w}."""

    def __init__(self, scales: tuple[float, ...] | list[float], num_channels: int) -> None:
        super().__init__()
        # keys as the original's, str(scale) with '.' → '-' ('1', '0-5', ...)
        downs = {str(s).replace(".", "-"): AntiAliasInterpolation2d(num_channels, s) for s in scales}
        self.downs = nn.ModuleDict(downs)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"prediction_" + key.replace("-", "."): down(x) for key, down in self.downs.items()}
