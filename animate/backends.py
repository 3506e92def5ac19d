"""The subject detector (preprocessing's: faces or people) and face landmark backend (face-alignment when its weights
are on disk, else dlib's 68 points) a real-world animation uses: the best one present, named; nothing downloaded."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from fomm.animation import find_best_frame
from fomm.animator import AnimatorError
from services.cli import UserError

# dataset folder name in a config → what its subject is (the paper's data sets)
KIND_BY_DATASET = {"vox": "face", "nemo": "face", "taichi": "person", "fashion": "person", "ted": "person"}


class BackendUnavailable(UserError, RuntimeError):
    """No backend of the kind asked for can run here; the message says what is missing."""


def subject_kind(config, override: str | None = None) -> str:  # noqa: ANN001 - fomm.config.FommConfig
    """'face', 'person' or 'none': --subject-kind, else dataset_params.subject_kind, else from the data set's name."""
    name = Path(str(config.dataset_params.root_dir)).name.lower()
    return override or config.dataset_params.subject_kind or next(
        (kind for key, kind in KIND_BY_DATASET.items() if name.startswith(key)), "none")


def subject_detector(kind: str):  # noqa: ANN201 - preprocessing.detection.Detector
    """The preprocessing detector for `kind` ('face' or 'person'); BackendUnavailable when none runs here."""
    from preprocessing.detection import DetectorUnavailable, make_detector

    if kind not in ("face", "person"):
        raise BackendUnavailable(f"no subject detector for a {kind!r} config (use --crop center|pad|none, or say "
                                 "what it shows: --subject-kind face|person, or dataset_params.subject_kind)")
    try:
        return make_detector(kind)
    except DetectorUnavailable as err:
        raise BackendUnavailable(str(err)) from None


def best_frame(landmarks: Callable[[np.ndarray], np.ndarray | None], source: np.ndarray,
               driving: Iterable[np.ndarray | None], source_name: str, driving_name: str) -> int:
    """The driving frame (None: skipped) whose face landmarks best match the source's, both as the model sees them."""
    if (source_points := landmarks(source)) is None:
        raise AnimatorError(f"{source_name}: no face found (needed by --find-best-frame)")
    points = [None if frame is None else landmarks(frame) for frame in driving]
    try:
        return find_best_frame(source_points, points)
    except ValueError as err:
        raise AnimatorError(f"{driving_name}: {err}") from None


def best_landmarker(device: str = "cpu") -> tuple[str, Callable[[np.ndarray], np.ndarray | None]]:
    """(name, backend): face-alignment (the paper's FAN) when its weights are on disk, else dlib 68 points; a
    backend maps H×W×3 uint8 RGB to 68×2 pixels of the largest face, or None."""
    from preprocessing.landmarks import FaceLandmarks, missing_weights

    why_not = "weights missing"  # face-alignment's
    if not missing_weights():
        try:
            return "face-alignment", FaceLandmarks(device=device)
        except (ImportError, OSError) as err:
            why_not = str(err)
    try:
        from evaluation.backends_face import Dlib68Landmarks

        dlib = Dlib68Landmarks()
    except (ImportError, OSError) as err:  # evaluation's BackendUnavailableError / MissingWeightsError
        raise BackendUnavailable(f"no face landmark backend: face-alignment: {why_not}; dlib-68: {err}") from None

    def find(frame: np.ndarray) -> np.ndarray | None:
        points, found = dlib(frame[None])
        return points[0] if found[0].all() else None

    return "dlib-68", find
