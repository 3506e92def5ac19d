"""Face extractors: face-alignment FAN landmarks (the paper's AKD), dlib 68 landmarks, OpenFace and dlib embeddings;
dlib's models ship in the `face_recognition_models` wheel, the others' weights are local files."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.extractors import BackendUnavailableError, MissingWeightsError, check_frames, per_frame
from preprocessing.landmarks import FaceLandmarks

OPENFACE_FILE = "nn4.small2.v1.t7"
DLIB_INSTALL = "dlib-bin face_recognition_models"


def require_module(module: str, backend: str, install: str) -> Any:
    """Import `module` or raise BackendUnavailableError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackendUnavailableError(f"{backend}: Python package {module!r} is not installed "
                                      f"({err}); install it with `pip install {install}`") from err


def _dlib_file(backend: str, given: str | Path | None, name: str) -> Path:
    """`given`, or the dlib model file `name` of the face_recognition_models wheel (found without importing it)."""
    if given:
        path = Path(given)
    elif (spec := importlib.util.find_spec("face_recognition_models")) and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    else:
        raise BackendUnavailableError(f"{backend}: package 'face_recognition_models' with its bundled weights is "
                                      f"not installed; install it with `pip install {DLIB_INSTALL}`")
    if not path.is_file():
        raise MissingWeightsError(backend, path, f"It ships in the face_recognition_models wheel "
                                  f"(`pip install --force-reinstall {DLIB_INSTALL}`).")
    return path


class FaceAlignmentLandmarks:
    """face-alignment's 68 FAN landmarks of the largest face; `hub_dir/checkpoints/` holds the FAN and S3FD files."""

    name = FaceLandmarks.name
    network = FaceLandmarks.network
    num_points = FaceLandmarks.num_points

    def __init__(self, hub_dir: str | Path | None = None, device: str = "cpu") -> None:
        require_module("face_alignment", self.name, "face-alignment")
        self._find = FaceLandmarks(hub_dir, device)  # MissingWeightsError names a missing FAN or S3FD file

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = per_frame(frames, self._find, (68, 2))
        return points, np.isfinite(points).all(axis=-1)  # T×68×2, T×68


class _DlibFaces:
    """dlib's HOG frontal face detector plus a shape predictor; the largest face per frame."""

    def __init__(self, backend: str, predictor_path: str | Path | None, predictor_file: str) -> None:
        self.dlib = require_module("dlib", backend, DLIB_INSTALL)
        self.detector = self.dlib.get_frontal_face_detector()
        self.predictor = self.dlib.shape_predictor(str(_dlib_file(backend, predictor_path, predictor_file)))

    def per_face(self, frames: np.ndarray, read: Callable, shape: tuple[int, ...]) -> np.ndarray:
        """read(frame, the largest face's dlib.full_object_detection) per frame → T×shape, NaN where no face."""
        def find(frame: np.ndarray) -> Any:
            # dlib's HOG face detector needs faces of about 80 px: upsample small frames (64² crops need 1-2 steps)
            rects = self.detector(frame, 2 if frame.shape[0] < 100 else (1 if frame.shape[0] < 200 else 0))
            return read(frame, self.predictor(frame, max(rects, key=lambda r: r.area()))) if len(rects) else None

        return per_frame(frames, find, shape)


class Dlib68Landmarks:
    """dlib's 68 face landmarks (iBUG 300-W scheme, as face-alignment's; that data is for research use only)."""

    name = "dlib-68"
    network = "dlib HOG face detector + shape_predictor_68_face_landmarks"
    num_points = 68

    def __init__(self, predictor_path: str | Path | None = None) -> None:
        self._faces = _DlibFaces(self.name, predictor_path, "shape_predictor_68_face_landmarks.dat")

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = self._faces.per_face(frames, lambda _, face: [(p.x, p.y) for p in face.parts()], (68, 2))
        return points, np.isfinite(points).all(axis=-1)


class DlibResNetEmbedding:
    """dlib's ResNet face recognition model v1, 128-D (the paper used OpenFace); NaN where no face was found."""

    name = "dlib-resnet-128"
    network = "dlib_face_recognition_resnet_model_v1 (128-D) on dlib HOG detections"

    def __init__(self, model_path: str | Path | None = None, predictor_path: str | Path | None = None) -> None:
        self._faces = _DlibFaces(self.name, predictor_path, "shape_predictor_5_face_landmarks.dat")
        path = _dlib_file(self.name, model_path, "dlib_face_recognition_resnet_model_v1.dat")
        self._net = self._faces.dlib.face_recognition_model_v1(str(path))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self._faces.per_face(
            frames, lambda frame, face: np.asarray(self._net.compute_face_descriptor(frame, face)), (128,))


class OpenFaceEmbedding:
    """OpenFace nn4.small2.v1, 128-D (the paper's kind), of the whole frame (a face crop) at 96×96 by OpenCV DNN."""

    name = "openface"
    network = "OpenFace nn4.small2.v1 (Torch7, 128-D) via OpenCV DNN on the whole 96x96 frame"

    def __init__(self, model_path: str | Path | None = None) -> None:
        import cv2

        path = Path(model_path) if model_path else Path.home() / ".cache" / "openface" / OPENFACE_FILE
        if not path.is_file():
            raise MissingWeightsError(self.name, path, "Get nn4.small2.v1.t7 from the OpenFace project's model "
                                      "downloads (cmusatyalab/openface) and pass model_path= or copy it there.")
        self._net = cv2.dnn.readNetFromTorch(str(path))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import cv2

        frames = check_frames(frames)
        blob = cv2.dnn.blobFromImages(list(frames), 1.0 / 255, (96, 96), (0, 0, 0), swapRB=False, crop=False)
        self._net.setInput(blob)
        return np.asarray(self._net.forward(), dtype=np.float64).reshape(len(frames), -1)  # T×128
