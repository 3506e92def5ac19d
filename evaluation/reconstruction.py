"""Video reconstruction (Sec. 4) of uint8 frames at the model's size around `fomm.reconstruction.reconstruct`
(which training's validation uses too), with a check for non-finite predictions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class ReconstructionModel:
    """The two networks reconstruction needs, in eval mode, plus where they came from."""

    generator: torch.nn.Module
    kp_detector: torch.nn.Module
    frame_size: tuple[int, int]  # H, W the model was configured for (dataset_params.frame_shape)
    checkpoint: str
    epoch: int


def load_model(config_path: str | Path, checkpoint: str | Path | None, device: str = "cpu") -> ReconstructionModel:
    """Build generator + kp detector from a FOMM YAML and load an original-format checkpoint into them.

    `checkpoint=None` keeps the random initialisation (for tests and smoke runs only).
    """
    import fomm
    from fomm.models import build_networks

    cfg = fomm.load_config(config_path)
    nets = build_networks(cfg.model_params, seed=0)  # a reproducible random init, the same in every Ray worker
    generator, kp_detector = nets.generator, nets.kp_detector
    epoch = 0
    if checkpoint is not None:
        epoch = fomm.load_checkpoint(checkpoint, generator=generator, kp_detector=kp_detector, map_location=device)
    generator.to(device).eval()
    kp_detector.to(device).eval()
    shape = tuple(cfg.dataset_params.frame_shape)
    return ReconstructionModel(generator, kp_detector, (int(shape[0]), int(shape[1])),
                               str(checkpoint) if checkpoint is not None else "random-init", epoch)


@torch.no_grad()
def reconstruct_video(model: ReconstructionModel, frames: np.ndarray, batch_size: int = 16,
                      device: str = "cpu", precision: str = "auto") -> dict[str, np.ndarray]:
    """Reconstruct a video T×H×W×3 uint8 from its first frame and the keypoints of every frame (fomm.reconstruction).

    `precision`: auto (bf16 autocast where the device computes bf16 natively, fp32 elsewhere), fp32 or bf16.
    Returns {'real': T×H×W×3 uint8 at the model's frame size, 'prediction': T×H×W×3 uint8,
    'kp_driving': T×K×2 in [-1, 1], 'kp_source': K×2}.
    """
    from fomm.animator import fit_frames, frames_to_tensor, to_uint8
    from fomm.precision import autocast_dtype
    from fomm.reconstruction import reconstruct

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"reconstruct_video: expected T×H×W×3 frames with T ≥ 1, got {frames.shape}")
    video = fit_frames(frames_to_tensor(frames), model.frame_size, crop="none")  # T×3×H×W, antialiased resize
    out = reconstruct(model.kp_detector, model.generator, video, batch_size,
                      autocast_dtype(precision, torch.device(device)), device)
    bad = (~torch.isfinite(out.prediction)).flatten(1).any(dim=1).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"the model produced non-finite frames (NaN/inf) at frames {bad[0]}..{bad[-1]}")
    return {
        "real": to_uint8(video),
        "prediction": to_uint8(out.prediction),
        "kp_driving": out.kp_driving.cpu().numpy(),  # T×K×2
        "kp_source": out.kp_source.cpu().numpy(),  # K×2
    }
