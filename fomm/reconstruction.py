"""Video reconstruction (Sec. 4), the one behind training's validation L1 and the evaluation's: frame 0 is the
source (prepared once), every frame is driven by its own absolute keypoints, predictions on 8-bit levels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fomm.geometry import Keypoints, expand_kp
from fomm.precision import autocast


def l1_per_frame(prediction: Tensor, real: Tensor) -> Tensor:
    """Mean absolute pixel difference of each frame: T×C×H×W, T×C×H×W → T."""
    return (prediction - real).abs().flatten(1).mean(dim=1)


def _cast(kp: Keypoints, dtype: torch.dtype) -> Keypoints:
    return {k: v.to(dtype) for k, v in kp.items()}  # type: ignore[return-value]


@torch.no_grad()
def reconstruct(kp_detector: nn.Module, generator: nn.Module, video: Tensor, batch_size: int = 16,
                dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
    """Reconstruct `video` (T×3×H×W in [0, 1], T ≥ 1) from its first frame, in eval mode (restored after), on
    `device`; `dtype`: the autocast precision (None: the video's, the modules' and outputs' dtype). Returns the
    prediction: T×3×H×W in [0, 1], the video's dtype, on 8-bit levels (NaN where the model made NaN)."""
    device = torch.device(device) if device is not None else video.device
    modes = kp_detector.training, generator.training
    kp_detector.eval()
    generator.eval()
    try:
        source = video[:1].to(device)  # 1×3×H×W
        with autocast(dtype, device):
            kp_source = _cast(kp_detector(source), video.dtype)  # value 1×K×2, jacobian 1×K×2×2
            prepared = generator.prepare_source(source, kp_source)
        predictions = []
        for start in range(0, len(video), batch_size):
            driving = video[start:start + batch_size].to(device)  # B×3×H×W
            with autocast(dtype, device):
                kp_driving = _cast(kp_detector(driving), video.dtype)
                out = generator(None, kp_driving=kp_driving, kp_source=expand_kp(kp_source, driving.shape[0]),
                                source=prepared, outputs="prediction")
            prediction = out["prediction"].to(video.dtype)
            predictions.append(prediction.clamp(0, 1).mul(255).round().div(255))  # the 256 levels of uint8
        return torch.cat(predictions)
    finally:
        kp_detector.train(modes[0])
        generator.train(modes[1])
