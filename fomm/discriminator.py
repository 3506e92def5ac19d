"""Multi-scale patch discriminator with optional keypoint heatmaps and spectral norm (adversarial configs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fomm.blocks import level_features
from fomm.config.model_params import ModelConfig
from fomm.geometry import Keypoints, kp2gaussian


class DiscriminatorBlock(nn.Module):
    """Conv 4×4 (no padding; spectral norm optional) → instance norm → leaky ReLU 0.2 → 2×2 average pool."""

    def __init__(self, in_features: int, out_features: int, norm: bool = False, pool: bool = False,
                 sn: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d(in_features, out_features, kernel_size=4)
        # hook-based spectral norm keeps the original key names (weight_orig, weight_u, weight_v)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else nn.Identity()
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.norm(self.conv(x)), 0.2)
        return F.avg_pool2d(out, (2, 2)) if self.pool else out


class Discriminator(nn.Module):
    """One scale: returns the feature map of every block and a patch prediction map."""

    def __init__(self, num_channels: int = 3, block_expansion: int = 64, num_blocks: int = 4,
                 max_features: int = 512, sn: bool = False, use_kp: bool = False, num_kp: int = 10,
                 kp_variance: float = 0.01) -> None:
        super().__init__()
        features = [num_channels + num_kp * use_kp] + [level_features(block_expansion, max_features, i)
                                                       for i in range(1, num_blocks + 1)]
        self.down_blocks = nn.ModuleList(
            DiscriminatorBlock(features[i], features[i + 1], norm=i != 0, pool=i != num_blocks - 1, sn=sn)
            for i in range(num_blocks))
        conv = nn.Conv2d(features[-1], 1, kernel_size=1)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.use_kp = use_kp
        self.kp_variance = kp_variance

    def forward(self, x: Tensor, kp: Keypoints | None = None) -> tuple[list[Tensor], Tensor]:
        out = x
        if self.use_kp:
            if kp is None:
                raise ValueError("this discriminator uses keypoint heatmaps (use_kp): pass kp")
            out = torch.cat([out, kp2gaussian(kp, x.shape[2:], self.kp_variance)], dim=1)
        feature_maps = []
        for block in self.down_blocks:
            out = block(out)
            feature_maps.append(out)
        return feature_maps, self.conv(out)


class MultiScaleDiscriminator(nn.Module):
    """One discriminator per pyramid scale, under `discs.<scale with '.' → '-'>`."""

    def __init__(self, scales: tuple[float, ...] = (), **kwargs: object) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.discs = nn.ModuleDict({str(s).replace(".", "-"): Discriminator(**kwargs) for s in scales})

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> MultiScaleDiscriminator:
        return cls(num_channels=cfg.common_params.num_channels, num_kp=cfg.common_params.num_kp,
                   **cfg.discriminator_params.to_dict())

    def forward(self, pyramid: dict[str, Tensor], kp: Keypoints | None = None) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, disc in self.discs.items():
            scale = key.replace("-", ".")
            out["feature_maps_" + scale], out["prediction_map_" + scale] = disc(pyramid["prediction_" + scale], kp)
        return out
