"""Detectors of faces (face-alignment's S3FD, OpenCV Haar) and people (OpenCV HOG): RGB frame → N×5 boxes.

Boxes are (x0, y0, x1, y1, score) in the frame's pixels; S3FD runs only when its weights are on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

S3FD_FILE = "s3fd-619a316812.pth"
MAX_SIDE = 640  # frames are searched at most this large (longer side)


class DetectorUnavailable(RuntimeError):
    """A detector backend that cannot run here (missing weights or OpenCV feature); says what is missing."""


class Detector(Protocol):
    name: str

    def detect(self, frame: np.ndarray) -> np.ndarray:  # H×W×3 uint8 RGB → N×5
        ...


def _downscale(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = frame.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        frame = cv2.resize(frame, (int(round(w * s)), int(round(h * s))), interpolation=cv2.INTER_AREA)
    return frame, s


def _rects_to_boxes(rects: np.ndarray, scores: np.ndarray, s: float) -> np.ndarray:
    r = np.asarray(rects, np.float64).reshape(-1, 4) / s
    boxes = np.column_stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3],
                             np.asarray(scores, np.float64).reshape(-1)])
    return boxes[np.argsort(-boxes[:, 4])]


class FullFrameDetector:
    """No detection: the whole frame is the object (synthetic data, pre-cropped videos)."""

    name = "none"

    def detect(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        return np.array([[0.0, 0.0, float(w), float(h), 1.0]])


class HaarFaceDetector:
    """OpenCV's bundled frontal-face Haar cascade, searched at the lowest resolution where a face of
    `min_face` source pixels still spans its 24-pixel window (6× faster at min_face 64, large faces too)."""

    name = "haar"

    def __init__(self, min_face: int = 64) -> None:
        if not hasattr(cv2, "CascadeClassifier"):
            raise DetectorUnavailable(f"OpenCV {cv2.__version__} has no CascadeClassifier (install opencv<5)")
        cascade_file = "haarcascade_frontalface_default.xml"
        roots = [r for r in (getattr(getattr(cv2, "data", None), "haarcascades", ""), "/usr/share/opencv4/haarcascades",
                             "/usr/share/opencv/haarcascades", "/usr/local/share/opencv4/haarcascades") if r]
        path = next((str(Path(r) / cascade_file) for r in roots if (Path(r) / cascade_file).is_file()), None)
        if path is None:
            raise DetectorUnavailable(f"{cascade_file}: not found in {roots}")
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise DetectorUnavailable(f"{path}: not a loadable Haar cascade")
        self.min_face = min_face

    def detect(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        side = max(h, w) * min(1.0, 24.0 / max(self.min_face, 1))
        small, s = _downscale(frame, int(min(MAX_SIDE, max(side, 96))))
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        rects, neighbours = self.cascade.detectMultiScale2(gray, scaleFactor=1.1, minNeighbors=6,
                                                           minSize=(20, 20))
        return _rects_to_boxes(rects, neighbours, s)


class HogPersonDetector:
    """OpenCV's HOG + linear SVM people detector (offline; the SVM is compiled into OpenCV 4.x)."""

    name = "hog"

    def __init__(self) -> None:
        if not hasattr(cv2, "HOGDescriptor"):
            raise DetectorUnavailable(f"OpenCV {cv2.__version__} has no HOGDescriptor (install opencv<5)")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, frame: np.ndarray) -> np.ndarray:
        small, s = _downscale(frame, MAX_SIDE)
        pad = 32  # people touching the border are found more often on a padded frame
        padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        rects, weights = self.hog.detectMultiScale(padded, hitThreshold=0.0, winStride=(8, 8), padding=(8, 8),
                                                   scale=1.05)
        rects = np.asarray(rects, np.float64).reshape(-1, 4) - [pad, pad, 0, 0]
        weights = np.asarray(weights, np.float64).reshape(-1)
        keep = cv2.dnn.NMSBoxes(rects.tolist(), weights.tolist(), 0.3, 0.4)  # min score, NMS IoU
        keep = np.asarray(keep, dtype=int).reshape(-1)
        boxes = _rects_to_boxes(rects[keep], weights[keep], s)
        h, w = frame.shape[:2]
        boxes[:, :4] = boxes[:, :4].clip(0, [w, h, w, h])
        return boxes


class S3FDFaceDetector:
    """face-alignment's S3FD face detector, from a local weights file only."""

    name = "s3fd"

    def __init__(self) -> None:
        path = find_s3fd_weights()
        if path is None:
            raise DetectorUnavailable(f"S3FD weights {S3FD_FILE} not found (set FOMM_S3FD_WEIGHTS or put it in "
                                      "the torch hub cache); no download is attempted")
        from face_alignment.detection.sfd.sfd_detector import SFDDetector

        self.model = SFDDetector("cpu", path_to_detector=path, filter_threshold=0.5)

    def detect(self, frame: np.ndarray) -> np.ndarray:
        small, s = _downscale(frame, MAX_SIDE)
        found = self.model.detect_from_image(np.ascontiguousarray(small[..., ::-1]))  # it expects BGR
        boxes = np.asarray(found, np.float64).reshape(-1, 5)
        boxes[:, :4] /= s
        return boxes[np.argsort(-boxes[:, 4])]


def find_s3fd_weights() -> str | None:
    hub = os.environ.get("TORCH_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "torch")
    candidates = [os.environ.get("FOMM_S3FD_WEIGHTS", ""), os.path.join(hub, "hub", "checkpoints", S3FD_FILE)]
    return next((c for c in candidates if c and os.path.isfile(c)), None)


BACKENDS = {"face": ("s3fd", "haar"), "person": ("hog",), "none": ("none",)}
_CLASSES = {"s3fd": S3FDFaceDetector, "haar": HaarFaceDetector, "hog": HogPersonDetector, "none": FullFrameDetector}


def make_detector(kind: str, backend: str = "auto", min_face: int = 64) -> Detector:
    """A detector for `kind` ('face', 'person', 'none'); backend 'auto' takes the first one available."""
    if kind not in BACKENDS:
        raise ValueError(f"unknown detector kind {kind!r}: expected one of {sorted(BACKENDS)}")
    if backend != "auto" and backend not in _CLASSES:
        raise ValueError(f"unknown detector backend {backend!r}: expected one of {sorted(_CLASSES)}")
    reasons = []
    for name in BACKENDS[kind] if backend == "auto" else [backend]:
        try:
            return HaarFaceDetector(min_face) if name == "haar" else _CLASSES[name]()
        except DetectorUnavailable as e:
            if backend != "auto":
                raise  # the one asked for: its own reason
            reasons.append(f"{name}: {e}")
    raise DetectorUnavailable(f"no {kind} detector available: " + "; ".join(reasons))
