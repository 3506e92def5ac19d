"""Auto-crop planning: the subject's square crop in the source and, smoothed, on every driving frame; the training
clips' crop rule (preprocessing.cropping), the IoU tracker, one-euro filtered (fomm.smoothing), sub-pixel crops."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, pairwise

import cv2
import numpy as np
import torch

from fomm.animator import AnimatorError
from fomm.smoothing import OneEuroFilter
from preprocessing.config import PreprocessConfig
from preprocessing.cropping import enlarge_box, fit_square
from preprocessing.iou_tracks import IoUTracker

# a box moves slowly for its size: twice the keypoints' time constant and a lower speed gain keep a still crop
# still (≥ 3× less acceleration on a held-still head) with a lag of ≤ 2 frames (benchmarks/bench_realworld.py)
BOX_SMOOTHING, BOX_BETA = 2.0, 1.0
DETECT_EVERY = 3  # the detector runs on every n-th driving frame and the last (boxes between: interpolated)


def pick_subject(boxes: np.ndarray, subject: int | None, name: str) -> np.ndarray:
    """Subject `subject` counted from the left (0 first), or the largest when None.  boxes: N×5 → 4"""
    if len(boxes) == 0:
        raise AnimatorError(f"{name}: no subject found (use --crop center to animate the whole frame)")
    if subject is None:
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return boxes[int(np.argmax(areas)), :4]
    if not 0 <= subject < len(boxes):
        raise AnimatorError(f"{name}: --subject {subject}: {len(boxes)} found (0 to {len(boxes) - 1}, from the left)")
    return boxes[np.argsort(boxes[:, 0])[subject], :4]


def crop_subpixel(frame: np.ndarray, box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The square `box` (sub-pixel corners) of a frame resampled to size (h, w), antialiased.  # h×w×3

    Output pixel u samples x = x0 + (u + ½)·s − ½ (s: box side / output side), bilinearly, after a Gaussian
    pre-filter (σ = ½·√(s² − 1)) when shrinking: a box moving by a fraction of a pixel moves the crop as much."""
    x0, y0, x1, y1 = (float(v) for v in box)
    th, tw = size
    sx, sy = (x1 - x0) / tw, (y1 - y0) / th
    h, w = frame.shape[:2]
    ix0, iy0 = max(int(np.floor(x0)) - 2, 0), max(int(np.floor(y0)) - 2, 0)
    ix1, iy1 = min(int(np.ceil(x1)) + 2, w), min(int(np.ceil(y1)) + 2, h)
    region = frame[iy0:iy1, ix0:ix1]
    s = max(sx, sy)
    if s > 1:
        region = cv2.GaussianBlur(region, (0, 0), sigmaX=0.5 * np.sqrt(s * s - 1), borderType=cv2.BORDER_REPLICATE)
    m = np.array([[sx, 0.0, x0 - ix0 + 0.5 * sx - 0.5], [0.0, sy, y0 - iy0 + 0.5 * sy - 0.5]])
    return cv2.warpAffine(np.ascontiguousarray(region), m, (tw, th), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def track_subject(detections: Sequence[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame detections (N×5 each; None: not searched) → the longest track's box on every frame (interpolated
    between detections, held before the first / after the last) and where it was detected.  → T×4, T"""
    tracker = IoUTracker(iou_threshold=0.3, max_missed=3)
    for frame, boxes in enumerate(detections):
        if boxes is not None:
            tracker.update(frame, boxes[:, :4])
    count = len(detections)
    if not (tracks := tracker.finish(count)):
        return np.zeros((count, 4)), np.zeros(count, dtype=bool)
    track = max(tracks, key=lambda t: (len(t.frames), t.mean_side()))
    frames, boxes, t = np.asarray(track.frames), track.box_array(), np.arange(count)
    return np.stack([np.interp(t, frames, boxes[:, i]) for i in range(4)], axis=1), np.isin(t, frames)


def smooth_boxes(boxes: np.ndarray, strength: float, beta: float) -> np.ndarray:
    """One-euro filter of box centres and sizes, in units of the mean box side (0: unchanged).  T×4 → T×4"""
    b = np.asarray(boxes, dtype=np.float64)
    if strength == 0 or len(b) == 0:
        return b
    centre, size = (b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]  # T×2 each
    unit = float(np.mean(size.max(axis=1))) or 1.0
    cwh = torch.from_numpy(np.concatenate([centre, size], axis=1) / unit)
    out = OneEuroFilter(strength, beta).sequence(cwh).numpy() * unit  # T×4
    return np.concatenate([out[:, :2] - out[:, 2:] / 2, out[:, :2] + out[:, 2:] / 2], axis=1)


@dataclass(frozen=True)
class CropPlan:
    """Where the model looks, in the source and on each driving frame (pixel boxes, x1/y1 exclusive)."""

    detector: str  # the backend that found the subject (s3fd, haar, hog)
    source_box: np.ndarray  # 4 ints: square crop in the source
    driving_subject: np.ndarray  # T×4: tracked (interpolated where missed) detector boxes
    driving_found: np.ndarray  # T bool: the subject was detected on that frame
    driving_boxes: np.ndarray  # T×4 floats: smoothed square crops, sub-pixel


def plan_crops(source: np.ndarray, driving: Iterable[np.ndarray], detector, kind: str, *,  # noqa: ANN001
               subject: int | None = None, smooth: float = 0.0, source_name: str = "source",
               driving_name: str = "driving") -> CropPlan:
    """Detect the subject in the source and track it through the driving frames (one pass over them)."""
    margin = PreprocessConfig(input="-", output="-", kind=kind).crop_margin  # the training clips' (face 0.3)
    h, w = source.shape[:2]
    chosen = pick_subject(detector.detect(source), subject, source_name)
    detections = []  # N×5 per driving frame, None where not searched
    for index, (frame, following) in enumerate(pairwise(chain(driving, [None]))):  # the last frame: following None
        detections.append(detector.detect(frame) if index % DETECT_EVERY == 0 or following is None else None)
    if not detections:
        raise AnimatorError(f"{driving_name}: no frames")
    tracked, found = track_subject(detections)
    if not found.any():
        raise AnimatorError(f"{driving_name}: no subject found on any frame (use --crop center)")
    dh, dw = frame.shape[:2]  # the last driving frame's
    smoothed = smooth_boxes(tracked, BOX_SMOOTHING * smooth, beta=BOX_BETA)
    boxes = np.array([fit_square(enlarge_box(b, margin), dw, dh, integer=False) for b in smoothed])  # T×4 floats
    source_box = np.array(fit_square(enlarge_box(chosen, margin), w, h), dtype=np.int64)
    return CropPlan(detector=detector.name, source_box=source_box, driving_subject=tracked, driving_found=found,
                    driving_boxes=boxes)
