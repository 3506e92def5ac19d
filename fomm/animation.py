"""Relative motion transfer with movement-scale adaptation (Sec. 3.4, Eq. 14-15) and its best start frame."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fomm.geometry import Keypoints


def convex_hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of N×2 points (Andrew's monotone chain + shoelace); 0 when degenerate."""
    pts = sorted(set(map(tuple, np.asarray(points, dtype=np.float64).tolist())))
    if len(pts) < 3:
        return 0.0

    def cross(o, a, b) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(points: list) -> list:  # the lower hull (upper: points reversed) without its last point
        chain: list = []
        for p in points:
            while len(chain) >= 2 and cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    x, y = np.array(half(pts) + half(pts[::-1])).T
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def movement_scale(kp_source: Keypoints, kp_driving_initial: Keypoints) -> float:
    """sqrt(hull area of source keypoints) / sqrt(hull area of initial driving keypoints), first batch item."""
    source_area, driving_area = (convex_hull_area(kp["value"][0].detach().double().cpu().numpy())
                                 for kp in (kp_source, kp_driving_initial))
    return 1.0 if driving_area <= 0 else float(np.sqrt(source_area) / np.sqrt(driving_area))


def normalize_kp(kp_source: Keypoints, kp_driving: Keypoints, kp_driving_initial: Keypoints,
                 adapt_movement_scale: bool = False, use_relative_movement: bool = False,
                 use_relative_jacobian: bool = False, scale: float | None = None) -> Keypoints:
    """Keypoints that move the source as the driving video moves relative to its initial frame: value
    kp_source + s·(kp_driving − kp_driving_initial), jacobian J_driving · J_initial⁻¹ · J_source. `scale`: s
    computed once beforehand (movement_scale); else from the keypoints when `adapt_movement_scale`, else 1."""
    if scale is None:
        scale = movement_scale(kp_source, kp_driving_initial) if adapt_movement_scale else 1.0
    kp_new: Keypoints = dict(kp_driving)  # type: ignore[assignment]
    if use_relative_movement:
        kp_new["value"] = (kp_driving["value"] - kp_driving_initial["value"]) * scale + kp_source["value"]
        if use_relative_jacobian and "jacobian" in kp_driving:
            jacobian_diff = torch.matmul(kp_driving["jacobian"], torch.inverse(kp_driving_initial["jacobian"]))
            kp_new["jacobian"] = torch.matmul(jacobian_diff, kp_source["jacobian"])
    return kp_new


def normalize_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Face landmarks centred on their mean and divided by sqrt(hull area): invariant to shift and scale.  # N×2"""
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    points = points - points.mean(axis=0, keepdims=True)
    area = convex_hull_area(points)
    if area <= 0:
        raise ValueError(f"degenerate landmarks (convex hull area {area}); cannot normalise")
    return points / np.sqrt(area)


def find_best_frame(source_landmarks: np.ndarray, driving_landmarks: Sequence[np.ndarray | None]) -> int:
    """Index of the driving frame whose normalised landmarks are closest (squared L2) to the source's, the start
    of relative motion; frames without a face (None) or with degenerate landmarks are skipped."""
    source = normalize_landmarks(source_landmarks)
    best, best_distance = -1, np.inf
    for index, landmarks in enumerate(driving_landmarks):
        if landmarks is None:
            continue
        try:
            driving = normalize_landmarks(landmarks)
        except ValueError:
            continue
        if driving.shape != source.shape:
            raise ValueError(f"driving frame {index}: {driving.shape[0]} landmarks, source has {source.shape[0]}")
        distance = float(((source - driving) ** 2).sum())
        if distance < best_distance:
            best, best_distance = index, distance
    if best < 0:
        raise ValueError(f"no face found in any of the {len(driving_landmarks)} driving frames")
    return best
