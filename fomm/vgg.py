"""VGG-19 feature slices for the perceptual loss, with torchvision's key names; weights from a local file."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from fomm.checkpoint import read_checkpoint

# torchvision's vgg19().features layout (conv channel counts, 'M' = max-pool) up to conv5_1, the last the loss uses
_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
# relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 end after features indices 1, 6, 11, 20, 29
SLICE_ENDS = (2, 7, 12, 21, 30)
WEIGHTS_ENV = "FOMM_VGG19_WEIGHTS"
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"


def default_weights_path() -> Path | None:
    """$FOMM_VGG19_WEIGHTS, else torchvision's file in the torch hub cache, if present."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE
    return cached if cached.is_file() else None


class Vgg19(nn.Module):
    """Frozen VGG-19 returning the five relu*_1 activations of ImageNet-normalised input."""

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            # without ImageNet weights the loss uses fixed random features: seeded, so runs stay comparable
            torch.manual_seed(0)
            layers: list[nn.Module] = []
            channels = 3
            for item in _LAYOUT:
                if item == "M":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                    channels = item
            self.features = nn.Sequential(*layers)
        # ImageNet statistics held in float64 and cast to the input's dtype (float32: the same bits as before)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1),
                             persistent=False)
        if weights is not None:  # torchvision's vgg19 ImageNet state dict (`features.N.*`; classifier keys ignored)
            path = Path(weights)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: VGG-19 weights not found (torchvision's {TORCHVISION_FILE}; "
                                        f"set {WEIGHTS_ENV} or put it in the torch hub cache)")
            state = read_checkpoint(path)  # weights_only; a damaged file is one line naming it
            wanted = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
            own = self.features.state_dict()
            if missing := [k for k in own if k not in wanted]:
                raise ValueError(f"{path}: not a VGG-19 state dict (missing features.{missing[0]})")
            self.features.load_state_dict({k: wanted[k] for k in own})
        self.requires_grad_(False)

    def forward(self, x: Tensor, num_slices: int = len(SLICE_ENDS)) -> list[Tensor]:
        """relu1_1 … relu5_1 (the first `num_slices` of them: deeper layers are not computed)."""
        out = (x - self.mean.to(x)) / self.std.to(x)
        feats, start = [], 0
        for end in SLICE_ENDS[:num_slices]:
            out = self.features[start:end](out)
            feats.append(out)
            start = end
        return feats
