"""Video reconstruction (Sec. 4) of uint8 frames at the model's size by `fomm.reconstruction.reconstruct`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fomm.animator import SINGULAR, fit_frames, frames_to_tensor, nonfinite_frames, to_uint8
from fomm.checkpoint import load_checkpoint, require_checkpoint
from fomm.config.schema import FommConfig, load_config
from fomm.models import build_networks
from fomm.precision import autocast_dtype
from fomm.reconstruction import reconstruct
from services import storage


@dataclass(frozen=True)
class ReconstructionModel:
    """The two networks reconstruction needs, in eval mode, and the frame size they were configured for."""

    generator: torch.nn.Module
    kp_detector: torch.nn.Module
    frame_size: tuple[int, int]  # H, W (dataset_params.frame_shape)


@dataclass(frozen=True)
class ModelSource:
    """An evaluation's model, read once on the driver: the parsed config and the checkpoint file's bytes."""

    config: FommConfig
    checkpoint: str | None  # where the weights came from; None: random init (tests and smoke runs only)
    weights: bytes | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, config_path: str | Path, checkpoint: str | Path | None,
                endpoint: str | None = None) -> ModelSource:
        if checkpoint is not None:  # its head and zip directory first: a 12 GB file was read whole, then refused
            fs, path = storage.resolve(str(checkpoint), endpoint)
            with fs.open(path, "rb") as f:
                require_checkpoint(f, checkpoint)
        weights = None if checkpoint is None else storage.read_bytes(str(checkpoint), endpoint)
        return cls(load_config(config_path), None if checkpoint is None else str(checkpoint), weights)

    def identity(self) -> dict[str, str]:
        """checkpoint.path / .sha256 / .bytes ('random-init' when none), as logged to MLflow."""
        if self.weights is None:
            return {"checkpoint.path": "random-init", "checkpoint.sha256": "none"}
        return {"checkpoint.path": str(self.checkpoint), "checkpoint.sha256": hashlib.sha256(self.weights).hexdigest(),
                "checkpoint.bytes": str(len(self.weights))}

    def load(self, device: str = "cpu") -> ReconstructionModel:
        """Generator + kp detector built from the config with the checkpoint's weights, in eval mode."""
        nets = build_networks(self.config.model_params, seed=0)  # a reproducible random init, the same in every worker
        if self.weights is not None:
            load_checkpoint(self.checkpoint, generator=nets.generator, kp_detector=nets.kp_detector,
                            map_location=device, data=self.weights)
        height, width = self.config.dataset_params.frame_shape[:2]
        return ReconstructionModel(nets.generator.to(device).eval(), nets.kp_detector.to(device).eval(),
                                   (int(height), int(width)))


@torch.no_grad()
def reconstruct_video(model: ReconstructionModel, frames: np.ndarray, batch_size: int = 16,
                      device: str = "cpu", precision: str = "auto") -> dict[str, np.ndarray]:
    """A video T×H×W×3 uint8 rebuilt from its first frame and each frame's keypoints (`precision` auto, fp32, bf16)
    → {'real', 'prediction'}: T×H×W×3 uint8 at the model's size."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"reconstruct_video: expected T×H×W×3 frames with T ≥ 1, got {frames.shape}")
    video = fit_frames(frames_to_tensor(frames), model.frame_size, crop="none")  # T×3×H×W, antialiased resize
    try:
        prediction = reconstruct(model.kp_detector, model.generator, video, batch_size,
                                 autocast_dtype(precision, torch.device(device)), device)
    except torch.linalg.LinAlgError:  # a data error of the clip's run, as NaN frames are
        raise ValueError(SINGULAR) from None
    if bad := nonfinite_frames(prediction):
        raise ValueError(f"the model produced non-finite frames (NaN/inf) at frames {bad[0]}..{bad[-1]}")
    return {"real": to_uint8(video), "prediction": to_uint8(prediction)}
