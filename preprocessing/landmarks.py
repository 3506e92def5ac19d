"""Face landmarks with face-alignment (FAN 2-D, 68 points, S3FD face detector): the one wrapper of that library.

Weights come from a local torch hub cache only (`<hub>/checkpoints`); nothing is downloaded at run time."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np

from preprocessing.detection import S3FD_FILE
from services.errors import MissingWeightsError

# the files face-alignment would download on first use (names from its model URLs)
FAN_2D_WEIGHTS = "2DFAN4-11f355bf06.pth.tar"
WEIGHTS_URL = "https://www.adrianbulat.com/downloads/python-fan/"
_HUB_LOCK = threading.Lock()


def weights_dir(hub_dir: str | Path | None = None) -> Path:
    """Where face-alignment's weights are looked for: <hub dir>/checkpoints (default: torch's hub dir)."""
    import torch

    return Path(hub_dir or torch.hub.get_dir()) / "checkpoints"


def missing_weights(hub_dir: str | Path | None = None) -> list[Path]:
    folder = weights_dir(hub_dir)
    return [folder / name for name in (FAN_2D_WEIGHTS, S3FD_FILE) if not (folder / name).is_file()]


class FaceLandmarks:
    """68 face landmarks (x, y in pixels) of the largest face in a frame, or None when there is no face."""

    name = "face-alignment"
    network = "face-alignment FAN-4 2D (68 landmarks) + S3FD detector"
    num_points = 68

    def __init__(self, hub_dir: str | Path | None = None, device: str = "cpu") -> None:
        if missing := missing_weights(hub_dir):
            path = missing[0]
            raise MissingWeightsError(self.name, path, f"Download {WEIGHTS_URL}{path.name} on a machine with "
                                      f"internet and copy it to {path.parent}/ (or pass hub_dir=, or set "
                                      f"TORCH_HOME to a folder whose hub/checkpoints holds it).")
        import face_alignment
        import torch

        folder = weights_dir(hub_dir)
        with _HUB_LOCK:  # torch.hub (face-alignment's weight cache) points at the folder for the load
            previous = torch.hub._hub_dir  # the raw setting, not get_dir(): None keeps $TORCH_HOME in charge after
            torch.hub.set_dir(str(folder.parent))
            try:
                self._fa = face_alignment.FaceAlignment(
                    face_alignment.LandmarksType.TWO_D, device=device, flip_input=False, compile=False,
                    face_detector="sfd", face_detector_kwargs={"path_to_detector": str(folder / S3FD_FILE)})
            finally:
                torch.hub._hub_dir = previous

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
