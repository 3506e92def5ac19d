"""Weights-free extractors for anywhere (not comparable with Table 3): foreground centroids and a colour histogram."""

from __future__ import annotations

import numpy as np

from evaluation.extractors import per_frame


class ForegroundCentroids:
    """5 keypoints: the foreground mask's centroid, then its 4 quadrants'; one of under `min_pixels` is missing."""

    name = "foreground-centroids"
    network = "no network: foreground-mask centroid + 4 quadrant centroids"
    num_points = 5

    def __init__(self, threshold: float = 0.15, min_pixels: int = 4) -> None:
        self.threshold, self.min_pixels = threshold, min_pixels

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        points = np.full((5, 2), np.nan)  # NaN: missing
        # foreground: a channel differs by over `threshold` (in [0, 1]) from the median of the border pixels
        border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]]).astype(np.int16)  # P×3
        diff = np.abs(frame.astype(np.int16) - np.median(border, axis=0)).max(axis=-1) / 255.0  # H×W
        ys, xs = np.nonzero(diff > self.threshold)
        if len(xs) < self.min_pixels:
            return points
        cx, cy = xs.mean(), ys.mean()
        points[0] = cx, cy
        quadrants = [(xs < cx) & (ys < cy), (xs >= cx) & (ys < cy), (xs < cx) & (ys >= cy), (xs >= cx) & (ys >= cy)]
        for i, sel in enumerate(quadrants, start=1):
            if sel.sum() >= self.min_pixels:
                points[i] = xs[sel].mean(), ys[sel].mean()
        return points

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = per_frame(frames, self._frame, (5, 2))
        return points, np.isfinite(points).all(axis=-1)  # T×5×2, T×5


class ColourHistogram:
    """An L2-normalised joint HSV histogram: an appearance embedding that notices colour changes only."""

    name = "colour-histogram"
    network = "no network: L2-normalised HSV histogram (8x4x4 bins)"

    def __init__(self, bins: tuple[int, int, int] = (8, 4, 4)) -> None:
        self.bins = bins

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)  # H in [0, 180), S and V in [0, 256)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, list(self.bins), [0, 180, 0, 256, 0, 256]).ravel()
        return hist / max(float(np.linalg.norm(hist)), 1e-12)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return per_frame(frames, self._frame, (int(np.prod(self.bins)),))  # T×D
