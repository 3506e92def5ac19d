"""IoU tracking: hand-computed overlaps, and tracks that split on jumps, disappearances and cuts."""

from __future__ import annotations

import numpy as np
import pytest

from preprocessing.iou_tracks import CutDetector, IoUTracker, iou


def test_iou_by_hand():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    # half overlap: 50 / 150; identical: 1; disjoint: 0; contained quarter: 25 / 100
    np.testing.assert_allclose(iou(a, b), [[1 / 3, 1.0, 0.0, 0.25]])
    assert iou(a, np.zeros((0, 4))).shape == (1, 0)


def run(tracker: IoUTracker, rounds: dict[int, list[list[float]]], num_frames: int):
    for frame in sorted(rounds):
        tracker.update(frame, np.array(rounds[frame], dtype=float).reshape(-1, 4))
    return tracker.finish(num_frames)


def test_smooth_motion_is_one_track_covering_all_frames():
    rounds = {f: [[10 + f, 10, 50 + f, 50]] for f in range(0, 30, 5)}  # 1 px per frame
    tracks = run(IoUTracker(0.3, 1, step=5), rounds, num_frames=30)
    assert len(tracks) == 1
    assert (tracks[0].start, tracks[0].end, len(tracks[0].boxes)) == (0, 30, 6)


def test_a_jump_starts_a_new_track():
    rounds = {0: [[0, 0, 20, 20]], 5: [[2, 0, 22, 20]], 10: [[60, 60, 80, 80]], 15: [[61, 60, 81, 80]]}
    tracks = run(IoUTracker(0.3, max_missed=0, step=5), rounds, num_frames=20)
    assert [(t.start, t.end) for t in tracks] == [(0, 6), (10, 20)]


def test_disappearance_ends_the_track_after_its_last_detection():
    rounds = {0: [[0, 0, 20, 20]], 5: [[0, 0, 20, 20]], 10: [], 15: [], 20: [[0, 0, 20, 20]]}
    tracks = run(IoUTracker(0.3, max_missed=1, step=5), rounds, num_frames=25)
    assert [(t.start, t.end) for t in tracks] == [(0, 6), (20, 25)]


def test_one_missed_round_is_bridged():
    rounds = {0: [[0, 0, 20, 20]], 5: [], 10: [[1, 0, 21, 20]]}
    tracks = run(IoUTracker(0.3, max_missed=1, step=5), rounds, num_frames=15)
    assert [(t.start, t.end, t.frames) for t in tracks] == [(0, 15, [0, 10])]


def test_two_objects_two_tracks_matched_by_overlap():
    left, right = [0, 0, 20, 40], [50, 0, 70, 40]
    rounds = {f: [right, left] if f % 10 else [left, right] for f in range(0, 20, 5)}  # order swaps
    tracks = run(IoUTracker(0.3, 1, step=5), rounds, num_frames=20)
    assert len(tracks) == 2
    for t in tracks:
        assert len({tuple(b) for b in t.boxes}) == 1  # each track kept its own object


def test_cut_splits_tracks_at_the_cut():
    tracker = IoUTracker(0.3, 1, step=5)
    tracker.update(0, np.array([[0, 0, 20, 20]]))
    tracker.update(5, np.array([[0, 0, 20, 20]]))
    tracker.cut(8)  # same place after the cut, but another shot
    tracker.update(10, np.array([[0, 0, 20, 20]]))
    tracks = tracker.finish(15)
    assert [(t.start, t.end) for t in tracks] == [(0, 8), (10, 15)]


def test_cut_detector_fires_on_a_new_shot_only():
    rng = np.random.default_rng(0)
    shot_a = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    shot_b = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    detector = CutDetector(threshold=0.3)
    brighter = np.clip(shot_a.astype(int) + 20, 0, 255).astype(np.uint8)  # exposure change: no cut
    flags = [detector.is_cut(f) for f in (shot_a, shot_a, brighter, shot_b, shot_b)]
    assert flags == [False, False, False, True, False]


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_iou_threshold_bounds(threshold):
    tracker = IoUTracker(iou_threshold=max(threshold, 1e-9), max_missed=0, step=1)
    tracks = run(tracker, {0: [[0, 0, 10, 10]], 1: [[5, 0, 15, 10]]}, num_frames=2)
    # with a near-zero threshold any overlap continues the track; with 1.0 only an identical box does
    assert len(tracks) == (1 if threshold == 0.0 else 2)
