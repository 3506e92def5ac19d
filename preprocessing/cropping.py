"""Crop geometry: enlarge a box by a margin, make it square inside the frame, crop, resize keeping the aspect.

Boxes are (x0, y0, x1, y1) in pixels with x1, y1 exclusive, so a box's width is x1 − x0."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Box = tuple[float, float, float, float]


def enlarge_box(box: Sequence[float], margin: float) -> Box:
    """Move every side outwards by `margin` times the box's size along that axis."""
    x0, y0, x1, y1 = map(float, box)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return x0 - dx, y0 - dy, x1 + dx, y1 + dy


def clip_box(box: Sequence[float], width: int, height: int) -> Box:
    """Intersect a box with the frame [0, width) × [0, height)."""
    x0, y0, x1, y1 = map(float, box)
    return max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)


def fit_square(box: Sequence[float], width: int, height: int, integer: bool = True) -> tuple:
    """A square inside the frame covering `box` as far as it can: centred on it, then shifted (not shrunk) in.

    Integer pixels by default; `integer=False` keeps sub-pixel positions (smoothly moving crops)."""
    x0, y0, x1, y1 = map(float, box)
    snap = (lambda v: int(round(v))) if integer else float
    side = max(snap(min(max(x1 - x0, y1 - y0), width, height)), 1)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(snap(cx - side / 2), 0), width - side)
    top = min(max(snap(cy - side / 2), 0), height - side)
    return left, top, left + side, top + side


def crop(frame: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """frame[y0:y1, x0:x1] with the box clipped to the frame.  # h×w×3"""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in clip_box(box, w, h))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"crop box {tuple(box)} lies outside the {w}×{h} frame")
    return frame[y0:y1, x0:x1]


def resize_keep_aspect(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Fit inside size (h, w) keeping the aspect, centred and padded with black; area shrinks, bicubic enlarges."""
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = image.shape[:2]
    scale = min(th / h, tw / w)
    nh, nw = max(1, min(th, int(round(h * scale)))), max(1, min(tw, int(round(w * scale))))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nh, nw) != (h, w) else image
    if (nh, nw) == (th, tw):
        return np.ascontiguousarray(resized)
    out = np.zeros((th, tw) + image.shape[2:], dtype=image.dtype)
    top, left = (th - nh) // 2, (tw - nw) // 2
    out[top:top + nh, left:left + nw] = resized
    return out
