"""Detection, tracking and cropping on the real sample media (a few frames of each)."""

from __future__ import annotations

import numpy as np
import pytest

from preprocessing.config import PreprocessConfig
from preprocessing.detection import DetectorUnavailable, FullFrameDetector, make_detector
from preprocessing.process import process_video
from services.video_read import read_frames


def config(kind: str, **kw) -> PreprocessConfig:
    base = {"input": "-", "output": "-", "kind": kind, "size": 64, "detect_every": 5, "min_frames": 5,
            "min_size": 32, "frame_format": "png"}
    return PreprocessConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def face_detector():
    return make_detector("face")


@pytest.mark.parametrize("name", ["face_talk_a.mp4", "face_talk_b.mp4", "face_talk_c.mp4", "face_talk_d.mp4",
                                  "face_desk_portrait.mp4"])
def test_face_crop_contains_the_detected_face_in_every_frame(name, shared_data, face_detector):
    path = shared_data / name
    clips = process_video(str(path), config("face", max_frames=10), detector=face_detector)
    assert len(clips) == 1, [c.clip_id for c in clips]
    clip = clips[0]
    assert (clip.start_frame, clip.end_frame, clip.num_frames) == (0, 10, 10)
    x0, y0, x1, y1 = clip.crop_box
    assert x1 - x0 == y1 - y0  # square
    frames = read_frames(path, 10)
    for i in range(0, 10, 3):  # detect again on source frames and check the one crop holds the face
        faces = face_detector.detect(frames[i])
        assert len(faces), f"{name}: frame {i}: no face"
        face = faces[0, :4]
        inside = all(face[:2] >= (x0, y0)) and all(face[2:] <= (x1, y1))
        assert inside, f"{name}: frame {i}: face {face} outside crop {clip.crop_box}"
        assert (face[2] - face[0]) / (x1 - x0) > 0.3  # and the face is a good part of the crop


def test_two_people_give_two_tracks(shared_data):
    clips = process_video(str(shared_data / "body_two_people.mp4"), config("person", max_frames=15, min_size=100))
    assert len(clips) >= 2
    a, b = clips[:2]
    assert a.start_frame < b.end_frame and b.start_frame < a.end_frame  # at the same time
    assert a.crop_box != b.crop_box
    centres = sorted((c.crop_box[0] + c.crop_box[2]) / 2 for c in clips[:2])
    assert centres[1] - centres[0] > 50  # two different places in the frame


def test_a_scene_cut_splits_the_track(shared_data):
    cfg = config("face", max_frames=40, min_size=16, min_frames=4, detect_every=4)
    clips = process_video(str(shared_data / "multi_scene_cuts.mp4"), cfg)  # small faces: a detector for them
    cut = 20  # the first cut of the clip, found by the cut detector
    assert any(c.end_frame == cut for c in clips), [(c.start_frame, c.end_frame) for c in clips]
    assert any(c.start_frame >= cut for c in clips)
    assert all(c.end_frame <= cut or c.start_frame >= cut for c in clips)  # no clip spans the cut


def test_make_detector_backends():
    assert isinstance(make_detector("none"), FullFrameDetector)
    frame = np.zeros((48, 64, 3), np.uint8)
    np.testing.assert_array_equal(make_detector("none").detect(frame), [[0, 0, 64, 48, 1]])
    assert make_detector("person").detect(frame).shape == (0, 5)  # a black frame has nobody
    with pytest.raises(ValueError, match="unknown detector kind 'cat'"):
        make_detector("cat")
    with pytest.raises(DetectorUnavailable, match="S3FD weights"):
        make_detector("face", "s3fd") if not _have_s3fd() else _raise_unavailable()


def _have_s3fd() -> bool:
    from preprocessing.detection import find_s3fd_weights

    return find_s3fd_weights() is not None


def _raise_unavailable():
    raise DetectorUnavailable("S3FD weights present here; nothing to check")
