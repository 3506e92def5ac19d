"""Numpy-only views of what the model sees: keypoints drawn on frames; the one HSV → RGB."""

from __future__ import annotations

import numpy as np


def hsv_to_rgb(h: np.ndarray | float, s: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
    """HSV → RGB, everything in [0, 1] (hue in turns), broadcast over any shape: channel n (R 5, G 3, B 1) is
    v − v·s·clip(min(k, 4 − k), 0, 1) with k = (n + 6·h) mod 6.  # …×3"""
    h, s, v = (np.asarray(x, dtype=np.float64) for x in (h, s, v))
    k = (np.array([5.0, 3.0, 1.0]) + h[..., None] * 6.0) % 6.0
    return v[..., None] - (v * s)[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def keypoint_colors(num_kp: int) -> np.ndarray:
    """One saturated colour per keypoint, hues spread from red to magenta (as gist_rainbow).  # K×3 uint8"""
    hue = np.linspace(0.0, 5.0 / 6.0, num_kp) if num_kp > 1 else np.zeros(1)
    return np.round(hsv_to_rgb(hue, 1.0, 1.0) * 255).astype(np.uint8)


def keypoints_to_pixels(kp: np.ndarray, height: int, width: int) -> np.ndarray:
    """[-1, 1] (x, y) keypoints to pixel (column, row) coordinates of the model's grid.  # K×2"""
    kp = np.asarray(kp, dtype=np.float64)
    return np.stack([(kp[:, 0] + 1) * (width - 1) / 2, (kp[:, 1] + 1) * (height - 1) / 2], axis=1)


def draw_keypoints(image: np.ndarray, kp: np.ndarray, colors: np.ndarray | None = None,
                   radius: float | None = None) -> np.ndarray:
    """A copy of an H×W×3 uint8 image with a filled disc at each keypoint (K×2 in [-1, 1], x before y) in its colour
    (`colors` K×3 uint8, default keypoint_colors), of `radius` pixels (default min(H, W) / 64), at least 1."""
    out = np.array(image, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    radius = max(1.0, min(h, w) / 64 if radius is None else radius)
    rows, cols = np.mgrid[0:h, 0:w]
    colors = keypoint_colors(len(kp)) if colors is None else colors
    for (x, y), color in zip(keypoints_to_pixels(kp, h, w), colors):
        if np.isfinite(x) and np.isfinite(y):
            out[(cols - x) ** 2 + (rows - y) ** 2 <= radius**2] = color
    return out
