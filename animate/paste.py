"""Paste-back: the animated crop resized into its box of the full source frame (outside it: the source, bit for bit)
through a separable smoothstep mask, ramping on each side inside the frame so the difference fades out at the edge."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from preprocessing.cropping import resize_keep_aspect

FEATHER = 0.1  # the mask's ramps, as a fraction of the box's shorter side


def even_frame(frame: np.ndarray) -> np.ndarray:
    """The frame with its last row / column repeated where H or W is odd (H.264 4:2:0 needs even sizes)."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else frame


def _ramp(n: int, feather: int, left: bool, right: bool) -> np.ndarray:
    """Weights along one axis of the box: smoothstep over `feather` pixels at each feathered end.  # n"""
    i = np.arange(n, dtype=np.float32) + 0.5
    t = np.ones(n, dtype=np.float32)
    if left:
        t = np.minimum(t, i / feather)
    if right:
        t = np.minimum(t, (n - i) / feather)
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def feather_mask(box: Sequence[int], width: int, height: int) -> np.ndarray:
    """Blend weights of a box in a width×height frame; ramps FEATHER×side wide on inner sides.  # h×w"""
    x0, y0, x1, y1 = (int(v) for v in box)
    f = max(2, int(round(FEATHER * min(x1 - x0, y1 - y0))))
    mx = _ramp(x1 - x0, f, x0 > 0, x1 < width)
    my = _ramp(y1 - y0, f, y0 > 0, y1 < height)
    return my[:, None] * mx[None, :]


def paste_back(frame: np.ndarray, crop: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """A copy of `frame` (H×W×3 uint8) with `crop` (any size) resized into `box` and feather-blended."""
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = frame.shape[:2]
    out = frame.copy()
    patch = resize_keep_aspect(crop, (y1 - y0, x1 - x0)).astype(np.float32)
    mask = feather_mask(box, w, h)[..., None]
    under = frame[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(np.rint(under + mask * (patch - under)), 0, 255).astype(np.uint8)
    return out
