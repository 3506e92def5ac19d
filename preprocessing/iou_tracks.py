"""IoU tracking: per-frame detections → tracks, split when the object jumps, disappears or the shot cuts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import cv2
import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of boxes.  a: N×4, b: M×4 → N×M"""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class Track:
    """An object followed through frames [start, end): its detections and the frames they came from."""

    track_id: int
    frames: list[int] = field(default_factory=list)  # frames with a detection
    boxes: list[np.ndarray] = field(default_factory=list)  # one 4-vector per detection
    end: int = 0  # one past the last frame of the track
    missed: int = 0  # detection rounds since the last match

    @property
    def start(self) -> int:
        return self.frames[0]

    @property
    def num_frames(self) -> int:
        return self.end - self.start

    def box_array(self) -> np.ndarray:
        return np.stack(self.boxes)  # N×4

    def mean_side(self) -> float:
        b = self.box_array()
        return float(np.mean(np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])))


class IoUTracker:
    """Greedy IoU matching, one detection round at a time: a detection joins the live track it overlaps
    most (IoU ≥ iou_threshold) or starts a new one; a track unmatched for more than `max_missed` rounds ends
    after its last detection; a shot cut ends every track."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 1, step: int = 1) -> None:
        self.iou_threshold, self.max_missed, self.step = iou_threshold, max_missed, step
        self.live: list[Track] = []
        self.done: list[Track] = []
        self._ids = itertools.count()

    def update(self, frame: int, boxes: np.ndarray) -> None:
        """Add one round of detections (boxes: N×4) found on `frame`."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        matched_tracks: set[int] = set()
        matched_dets: set[int] = set()
        if self.live and len(boxes):
            overlap = iou(np.stack([t.boxes[-1] for t in self.live]), boxes)  # T×N
            for flat in np.argsort(-overlap, axis=None):
                ti, di = np.unravel_index(flat, overlap.shape)
                if overlap[ti, di] < self.iou_threshold:
                    break
                if ti in matched_tracks or di in matched_dets:
                    continue
                track = self.live[ti]
                track.frames.append(frame)
                track.boxes.append(boxes[di])
                track.end, track.missed = frame + 1, 0
                matched_tracks.add(int(ti))
                matched_dets.add(int(di))
        for i, track in enumerate(self.live):
            if i not in matched_tracks:
                track.missed += 1
        self.done += [t for t in self.live if t.missed > self.max_missed]  # disappeared: ends after its last detection
        self.live = [t for t in self.live if t.missed <= self.max_missed]
        self.live += [Track(next(self._ids), [frame], [boxes[di]], end=frame + 1)
                      for di in range(len(boxes)) if di not in matched_dets]

    def cut(self, frame: int) -> None:
        """A shot boundary before `frame`: every live track ends there."""
        for track in self.live:
            if track.missed == 0:  # seen in the last round: it lasted until the cut
                track.end = max(track.end, min(frame, track.frames[-1] + self.step))
            self.done.append(track)
        self.live = []

    def finish(self, num_frames: int) -> list[Track]:
        """End the video; returns all tracks, ordered by start frame then id."""
        self.cut(num_frames)
        return sorted(self.done, key=lambda t: (t.start, t.track_id))


class CutDetector:
    """Shot-cut detection from consecutive frames: a large jump in a small greyscale thumbnail."""

    def __init__(self, threshold: float = 0.25, thumb: int = 32) -> None:
        self.threshold, self.thumb = threshold, thumb
        self._prev: np.ndarray | None = None

    def is_cut(self, frame: np.ndarray) -> bool:
        """A cut: the mean absolute difference (in [0, 1]) from the last thumbnail, over contrast, above threshold."""
        step = max(1, min(frame.shape[:2]) // (4 * self.thumb))  # subsample first: a thumbnail needs few pixels
        small = np.ascontiguousarray(frame[::step, ::step])
        g = cv2.resize(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (self.thumb, self.thumb),
                       interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        prev, self._prev = self._prev, g
        if prev is None:
            return False
        # compare shapes, not exposure: subtract each thumbnail's mean brightness first
        score = float(np.mean(np.abs((g - g.mean()) - (prev - prev.mean()))) / max(0.05, float(g.std() + prev.std())))
        return score > self.threshold
