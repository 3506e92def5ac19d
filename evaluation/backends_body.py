"""Body extractors: OpenPose COCO 18 keypoints via OpenCV DNN (the paper's kind) and a crude HOG person box."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation.extractors import MissingWeightsError, check_frames, per_frame

OPENPOSE_FILES = ("pose_deploy_linevec.prototxt", "pose_iter_440000.caffemodel")


def heatmaps_to_keypoints(heatmaps: np.ndarray, height: int, width: int,
                          threshold: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Per-part heatmaps N×h×w → (points N×2 in pixels of an H×W frame, present N): argmax above threshold."""
    n, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, -1)
    idx = flat.argmax(axis=1)
    peak = flat[np.arange(n), idx]
    ys, xs = np.divmod(idx, w)
    # heatmap cell centres mapped to frame pixel coordinates (pixel centres at integers)
    points = np.stack([(xs + 0.5) * width / w - 0.5, (ys + 0.5) * height / h - 0.5], axis=1).astype(np.float64)
    present = peak > threshold
    points[~present] = np.nan
    return points, present


class OpenPoseCoco18:
    """18 OpenPose-style body points (COCO model, single person: per-part heatmap peak) with missing flags."""

    name = "openpose-coco-18"
    network = "OpenPose COCO pose_iter_440000 (18 points) via OpenCV DNN, per-part heatmap argmax"
    num_points = 18

    def __init__(self, model_dir: str | Path | None = None, input_size: int = 368, threshold: float = 0.1) -> None:
        import cv2

        root = Path(model_dir) if model_dir else Path.home() / ".cache" / "openpose" / "coco"
        for filename in OPENPOSE_FILES:
            if not (root / filename).is_file():
                raise MissingWeightsError(self.name, root / filename, "Get the OpenPose COCO body model "
                                          "(CMU-Perceptual-Computing-Lab/openpose, models/pose/coco) and pass "
                                          "model_dir= or copy both files there.")
        self._net = cv2.dnn.readNetFromCaffe(str(root / OPENPOSE_FILES[0]), str(root / OPENPOSE_FILES[1]))
        self.input_size, self.threshold = input_size, threshold

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = per_frame(frames, self._points, (18, 2))  # NaN where missing
        return points, np.isfinite(points).all(axis=-1)

    def _points(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        # OpenPose's Caffe model takes BGR in [0, 1]
        self._net.setInput(cv2.dnn.blobFromImage(frame, 1.0 / 255, (self.input_size, self.input_size), (0, 0, 0),
                                                 swapRB=True, crop=False))
        heatmaps = self._net.forward()[0, :18]  # 18×h'×w'
        return heatmaps_to_keypoints(heatmaps, *frame.shape[:2], self.threshold)[0]


class HogPersonBox:
    """OpenCV's HOG people detector on frames upscaled to `min_side`: box corners + centre, where, not the pose."""

    name = "opencv-hog-person-box"
    network = "OpenCV HOG + linear SVM people detector (bundled), box corners and centre"
    num_points = 5

    def __init__(self, min_side: int = 256) -> None:
        import cv2

        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.min_side = min_side

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        frames = check_frames(frames)
        points = np.full((len(frames), 5, 2), np.nan)
        for t, frame in enumerate(frames):
            scale = max(1.0, self.min_side / min(frame.shape[:2]))
            image = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR) if scale > 1 else frame
            boxes, weights = self._hog.detectMultiScale(np.ascontiguousarray(image), winStride=(8, 8))
            if len(boxes) == 0:
                continue
            x, y, bw, bh = (np.asarray(boxes[int(np.argmax(np.ravel(weights)))], dtype=np.float64) / scale)
            points[t] = [(x, y), (x + bw, y), (x, y + bh), (x + bw, y + bh), (x + bw / 2, y + bh / 2)]
        return points, np.isfinite(points).all(axis=-1)
