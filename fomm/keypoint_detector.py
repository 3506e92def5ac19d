"""Keypoint detector: softmax heatmaps → keypoints and local affine Jacobians (Sec. 3.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fomm.blocks import AntiAliasInterpolation2d, Hourglass
from fomm.config.model_params import ModelConfig
from fomm.geometry import Keypoints, heatmap_to_keypoints


class KPDetector(nn.Module):
    """Detects K keypoints (soft-argmax of heatmaps with temperature) and, optionally, their Jacobians."""

    def __init__(self, block_expansion: int, num_kp: int, num_channels: int, max_features: int, num_blocks: int,
                 temperature: float, estimate_jacobian: bool = False, scale_factor: float = 1,
                 single_jacobian_map: bool = False, pad: int = 0) -> None:
        super().__init__()
        self.predictor = Hourglass(block_expansion, in_features=num_channels, max_features=max_features,
                                   num_blocks=num_blocks)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=(7, 7), padding=pad)
        self.temperature = temperature
        self.jacobian = None
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * self.num_jacobian_maps,
                                      kernel_size=(7, 7), padding=pad)
            # zero weights, bias (1, 0, 0, 1): every Jacobian starts as the identity
            self.jacobian.weight.data.zero_()
            self.jacobian.bias.data.copy_(torch.tensor([1, 0, 0, 1] * self.num_jacobian_maps))
        # scale 1: no module state, as in the original's keys
        self.down = AntiAliasInterpolation2d(num_channels, scale_factor) if scale_factor != 1 else nn.Identity()

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> KPDetector:
        common = cfg.common_params
        return cls(num_kp=common.num_kp, num_channels=common.num_channels, estimate_jacobian=common.estimate_jacobian,
                   **cfg.kp_detector_params.to_dict())

    def forward(self, x: Tensor) -> Keypoints:  # x: B×C×H×W in [0, 1]
        feature_map = self.predictor(self.down(x))  # B×(E+C)×h×w
        logits = self.kp(feature_map)  # B×K×h'×w'
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)
        out: Keypoints = {"value": heatmap_to_keypoints(heatmap)}  # B×K×2
        if self.jacobian is not None:
            maps = self.jacobian(feature_map).view(b, self.num_jacobian_maps, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * maps).view(b, k, 4, -1).sum(dim=-1)  # B×K×4
            out["jacobian"] = jacobian.view(b, k, 2, 2)
        return out
