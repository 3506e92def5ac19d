"""One-euro filter (Casiez et al., CHI 2012) over keypoints and Jacobians in frame units: an EMA whose cut-off
rises with speed; element-wise, one step per call, so state carries across a stream's batches."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _alpha(cutoff: Tensor | float) -> Tensor | float:
    """EMA weight of a first-order low-pass with `cutoff` in cycles per frame (time step 1)."""
    return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff))  # 1 / (1 + τ), τ = 1 / (2π cutoff)


class OneEuroFilter:
    """Element-wise one-euro filter, cut-off 1 / (2π S) + beta · |low-passed per-frame change|; `strength` S ≥ 0
    is the time constant at rest in frames (0: pass-through)."""

    def __init__(self, strength: float, beta: float = 5.0) -> None:
        if strength < 0:
            raise ValueError(f"smoothing strength must be ≥ 0, got {strength}")
        self.strength, self.beta = float(strength), float(beta)
        self.value: Tensor | None = None  # filtered
        self.last: Tensor | None = None  # raw, previous step
        self.speed: Tensor | None = None

    def __call__(self, x: Tensor) -> Tensor:
        """Filter one time step (any shape; the shape must stay the same between calls)."""
        if self.strength == 0:
            return x
        if self.value is None:
            self.value, self.last, self.speed = x.clone(), x.clone(), torch.zeros_like(x)
            return x
        a_d = _alpha(0.16)  # the speed's low-pass: a fixed cut-off, cycles per frame
        self.speed = a_d * (x - self.last) + (1 - a_d) * self.speed
        self.last = x
        cutoff = 1.0 / (2 * math.pi * self.strength) + self.beta * self.speed.abs()
        a = _alpha(cutoff)
        self.value = a * x + (1 - a) * self.value
        return self.value

    def sequence(self, xs: Tensor) -> Tensor:
        """Filter T steps stacked along the first dimension (unchanged at strength 0).  # T×..."""
        return torch.stack([self(x) for x in xs]) if len(xs) and self.strength else xs
