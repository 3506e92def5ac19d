"""Paste-back: the animated crop resized into its box of the full source frame (outside it: the source, bit for bit)
through a separable smoothstep mask, ramping on each side inside the frame so the difference fades out at the edge."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from preprocessing.cropping import resize_keep_aspect

FEATHER = 0.1  # the mask's ramps, as a fraction of the box's shorter side
MAX_SIDE = 3840  # a pasted-back output's longer side unless --output-size says otherwise (4K UHD, whatever the photo)


def even_frame(frame: np.ndarray) -> np.ndarray:
    """The frame with its last row / column repeated where H or W is odd (H.264 4:2:0 needs even sizes)."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else frame


def fit_frame(frame: np.ndarray, box: Sequence[int],
              bound: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The frame a crop is pasted into: `frame` resized to fit inside `bound` (h, w; default its longer side at most
    MAX_SIDE) keeping its aspect, even sizes, and `box` (x0, y0, x1, y1) scaled with it."""
    h, w = frame.shape[:2]
    th, tw = bound or (MAX_SIDE, MAX_SIDE)
    scale = min(th / h, tw / w) if bound else min(1.0, MAX_SIDE / max(h, w))
    nh, nw = max(2, int(h * scale) // 2 * 2), max(2, int(w * scale) // 2 * 2)
    if (nh, nw) == (h, w):
        return frame, np.asarray(box, dtype=np.int64)
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    x0, y0, x1, y1 = (int(round(v * f)) for v, f in zip(box, (nw / w, nh / h, nw / w, nh / h)))
    x0, y0 = min(max(0, x0), nw - 1), min(max(0, y0), nh - 1)
    return resized, np.array([x0, y0, min(max(x1, x0 + 1), nw), min(max(y1, y0 + 1), nh)], dtype=np.int64)


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
