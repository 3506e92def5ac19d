"""Metric arithmetic on hand-made cases: zeros for identical videos, known shifts, skips, MKR, squared AED."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import metrics
from evaluation.backends_offline import ColourHistogram, ForegroundCentroids

pytestmark = pytest.mark.numeric


def step_video(t: int = 3, h: int = 8, w: int = 10, edge: int = 5) -> np.ndarray:
    """Left of column `edge` black, right of it white.  # T×H×W×3 uint8"""
    v = np.zeros((t, h, w, 3), np.uint8)
    v[:, :, edge:] = 255
    return v


def blob_video(t: int = 4, size: int = 32, dx: int = 0, dy: int = 0) -> np.ndarray:
    """A two-colour blob on grey, moving down 1 px a frame, translated by (dx, dy).  # T×H×W×3 uint8"""
    v = np.full((t, size, size, 3), 100, np.uint8)
    for i in range(t):
        y0, x0 = 8 + dy + i, 9 + dx
        v[i, y0:y0 + 10, x0:x0 + 8] = (250, 30, 30)
        v[i, y0 + 6:y0 + 10, x0 + 8:x0 + 12] = (30, 250, 30)
    return v


def test_identical_videos_give_zero_everywhere() -> None:
    video = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    assert metrics.l1_per_frame(video, video).tolist() == [0.0] * 5
    kp = np.random.default_rng(1).uniform(0, 16, (5, 68, 2))
    akd = metrics.akd_per_frame(kp, kp)
    assert akd["akd"].tolist() == [0.0] * 5 and akd["akd_l2"].tolist() == [0.0] * 5
    present = np.ones((5, 18), bool)
    assert metrics.mkr_per_frame(present, present).tolist() == [0.0] * 5
    emb = np.random.default_rng(2).normal(size=(5, 128))
    aed = metrics.aed_per_frame(emb, emb)
    assert aed["aed"].tolist() == [0.0] * 5 and aed["aed_l2"].tolist() == [0.0] * 5


def test_identical_videos_through_offline_extractors() -> None:
    video = blob_video()
    kp, present = ForegroundCentroids()(video)
    assert present.all()
    assert np.nanmax(metrics.akd_per_frame(kp, kp, present, present)["akd"]) == 0.0
    hist = ColourHistogram()(video)
    assert metrics.aed_per_frame(hist, hist)["aed"].max() == 0.0


def test_l1_of_a_known_shift() -> None:
    # moving a black/white edge right by 2 columns flips exactly 2 of 10 columns: L1 = 2/10 per frame
    real, shifted = step_video(edge=5), step_video(edge=7)
    assert metrics.l1_per_frame(real, shifted) == pytest.approx([0.2] * 3)
    # floats in [0, 1] give the same figure as uint8
    assert metrics.l1_per_frame(real / 255.0, shifted / 255.0) == pytest.approx([0.2] * 3)


def test_akd_of_a_known_shift_on_keypoints() -> None:
    kp = np.random.default_rng(0).uniform(0, 64, (4, 10, 2))
    moved = kp + np.array([3.0, -4.0])
    akd = metrics.akd_per_frame(kp, moved)
    assert akd["akd"] == pytest.approx([3.5] * 4)  # the original's mean |Δx|, |Δy|: (3 + 4) / 2
    assert akd["akd_l2"] == pytest.approx([5.0] * 4)  # Euclidean: sqrt(3² + 4²)


def test_akd_of_a_known_pixel_shift_through_an_extractor() -> None:
    real, moved = blob_video(), blob_video(dx=3, dy=2)
    extractor = ForegroundCentroids()
    kp_real, p_real = extractor(real)
    kp_gen, p_gen = extractor(moved)
    akd = metrics.akd_per_frame(kp_real, kp_gen, p_real, p_gen)
    assert akd["akd"] == pytest.approx([2.5] * 4)
    assert akd["akd_l2"] == pytest.approx([math.sqrt(13)] * 4)


def test_akd_skips_frames_without_detection_in_the_generated_frame() -> None:
    kp = np.zeros((3, 2, 2))
    gen = kp + 1.0
    present_gen = np.array([[True, True], [False, False], [True, False]])
    akd = metrics.akd_per_frame(kp, gen, None, present_gen)["akd"]
    assert akd[0] == 1.0 and math.isnan(akd[1]) and akd[2] == 1.0
    # NaN coordinates count as missing too
    gen[2, 1] = np.nan
    assert metrics.akd_per_frame(kp, gen)["akd"][2] == 1.0
    assert metrics.aggregate({"akd": akd}) == {"akd": 1.0, "akd_frames": 2.0}


def test_mkr_hand_made() -> None:
    real = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], bool)
    gen = np.array([[1, 0, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]], bool)
    mkr = metrics.mkr_per_frame(real, gen)
    assert mkr[0] == 0.5  # 2 of the 4 real points missed
    assert mkr[1] == 0.0  # extra generated points are not "missing"
    assert math.isnan(mkr[2])  # nothing to miss: skipped
    assert metrics.aggregate({"mkr": mkr})["mkr"] == 0.25


def test_aed_is_squared_distance() -> None:
    real = np.array([[0.0, 0.0], [1.0, 1.0], [np.nan, np.nan]])
    gen = np.array([[3.0, 4.0], [1.0, 1.0], [0.0, 0.0]])
    aed = metrics.aed_per_frame(real, gen)
    assert aed["aed"][:2].tolist() == [25.0, 0.0] and aed["aed_l2"][:2].tolist() == [5.0, 0.0]
    assert math.isnan(aed["aed"][2])  # no embedding in the real frame: skipped
    assert metrics.aggregate(aed)["aed"] == 12.5


def test_aggregate_pools_frames_of_all_videos() -> None:
    # video A: 1 frame of 0.1; video B: 3 frames of 0.5 → pooled mean 0.4, not the mean of means 0.3
    pooled = metrics.aggregate({"l1": np.array([0.1, 0.5, 0.5, 0.5])})
    assert pooled["l1"] == pytest.approx(0.4) and pooled["l1_frames"] == 4


def test_shape_errors_name_the_metric() -> None:
    with pytest.raises(ValueError, match="L1"):
        metrics.l1_per_frame(np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 5, 3)))
    with pytest.raises(ValueError, match="AKD"):
        metrics.akd_per_frame(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match="AED"):
        metrics.aed_per_frame(np.zeros((2, 3)), np.zeros((2, 4)))
