"""Face landmarks with face-alignment (FAN 2-D, 68 points); weights come from the local torch hub cache only."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

# the files face-alignment would download on first use (names from its model URLs)
FAN_2D_WEIGHTS = "2DFAN4-11f355bf06.pth.tar"
SFD_WEIGHTS = "s3fd-619a316812.pth"


class LandmarksWeightsError(FileNotFoundError):
    """face-alignment's weight files are not on this machine (nothing is downloaded at run time)."""


def weights_dir() -> Path:
    """Where face-alignment looks for its weights: <torch hub dir>/checkpoints (TORCH_HOME moves it)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_weights() -> list[Path]:
    folder = weights_dir()
    return [folder / name for name in (FAN_2D_WEIGHTS, SFD_WEIGHTS) if not (folder / name).is_file()]


class FaceLandmarks:
    """68 face landmarks (x, y in pixels) of the largest face in a frame, or None when there is no face."""

    name = "face-alignment"
    network = "FAN 2D (2DFAN-4) with the S3FD face detector"

    def __init__(self, device: str = "cpu") -> None:
        missing = missing_weights()
        if missing:
            raise LandmarksWeightsError(
                f"face-alignment weights missing: {', '.join(str(p) for p in missing)} "
                f"(no download at run time; copy them there, or set TORCH_HOME to a folder whose "
                f"hub/checkpoints holds them)")
        import face_alignment

        self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device,
                                                flip_input=False, face_detector="sfd", compile=False)

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """frame H×W×3 uint8 RGB → 68×2 float landmarks of its largest face, or None."""
        with warnings.catch_warnings():  # "No faces were detected." is an answer here, not a warning
            warnings.simplefilter("ignore")
            landmarks, _, boxes = self._fa.get_landmarks_from_image(np.ascontiguousarray(frame),
                                                                    return_bboxes=True)
        if not landmarks:
            return None
        areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
        return np.asarray(landmarks[int(np.argmax(areas))], dtype=np.float64)[:, :2]
