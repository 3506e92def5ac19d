"""Occlusion-aware generator: encode the source, warp its features, mask occlusions, decode (Sec. 3.2, Eq. 8)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fomm.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, level_features
from fomm.config.model_params import ModelConfig
from fomm.dense_motion import DenseMotionNetwork, MotionSource
from fomm.geometry import Keypoints


def deform_input(x: Tensor, deformation: Tensor, align_corners: bool = False) -> Tensor:
    """Warp x by a B×h×w×2 sampling grid, resized bilinearly to x's size when they differ."""
    _, h_old, w_old, _ = deformation.shape
    _, _, h, w = x.shape
    if (h_old, w_old) != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                    align_corners=align_corners).permute(0, 2, 3, 1)
    return F.grid_sample(x, deformation, align_corners=align_corners)


@dataclass(frozen=True)
class GeneratorSource:
    """Everything the generator computes from the source alone: once per source when animating."""

    image: Tensor  # 1×C×H×W
    features: Tensor  # 1×C'×h×w, encoder output
    motion: MotionSource | None  # the dense motion network's share (None without one)


class OcclusionAwareGenerator(nn.Module):
    """Generates the driving frame from the source image and the two keypoint sets."""

    def __init__(self, num_channels: int, num_kp: int, block_expansion: int, max_features: int,
                 num_down_blocks: int, num_bottleneck_blocks: int, estimate_occlusion_map: bool = False,
                 dense_motion_params: dict | None = None, align_corners: bool = False) -> None:
        super().__init__()
        self.dense_motion_network = None if dense_motion_params is None else DenseMotionNetwork(
            num_kp=num_kp, num_channels=num_channels, estimate_occlusion_map=estimate_occlusion_map,
            align_corners=align_corners, **dense_motion_params)
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))
        features = [level_features(block_expansion, max_features, i) for i in range(num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock2d(features[i], features[i + 1]) for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(UpBlock2d(features[i + 1], features[i])
                                       for i in reversed(range(num_down_blocks)))
        self.bottleneck = nn.Sequential(OrderedDict((f"r{i}", ResBlock2d(features[-1]))
                                                    for i in range(num_bottleneck_blocks)))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.num_channels = num_channels
        self.align_corners = align_corners

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> OcclusionAwareGenerator:
        common = cfg.common_params  # generator_params's dict holds dense_motion_params as a dict (or None)
        return cls(num_channels=common.num_channels, num_kp=common.num_kp, align_corners=common.align_corners,
                   **cfg.generator_params.to_dict())

    def encode(self, source_image: Tensor) -> Tensor:
        """Source features before warping (computed once per source when animating).  # B×C'×h×w"""
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def prepare_source(self, source_image: Tensor, kp_source: Keypoints,
                       features: Tensor | None = None) -> GeneratorSource:
        """The source's share (`features`: the encoder's output, when already computed)."""
        motion = (self.dense_motion_network.prepare_source(source_image, kp_source)
                  if self.dense_motion_network is not None else None)
        features = self.encode(source_image) if features is None else features
        return GeneratorSource(image=source_image, features=features, motion=motion)

    def forward(self, source_image: Tensor | None, kp_driving: Keypoints, kp_source: Keypoints,
                source_features: Tensor | None = None, source: GeneratorSource | None = None,
                outputs: str = "all") -> dict[str, Tensor]:
        """The driving frame and the motion behind it; `source` (prepare_source's) replaces `source_image` and
        `source_features`; `outputs="prediction"` keeps only `prediction` and `occlusion_map` (inference)."""
        if outputs not in ("all", "prediction"):
            raise ValueError(f"outputs must be 'all' or 'prediction', got {outputs!r}")
        full = outputs == "all"
        if source is None:
            source = self.prepare_source(source_image, kp_source, source_features)
        b = kp_driving["value"].shape[0]
        out = source.features.expand(b, *source.features.shape[1:])
        result: dict[str, Tensor] = {}
        if self.dense_motion_network is not None:
            motion = self.dense_motion_network(kp_driving=kp_driving, kp_source=kp_source, source=source.motion)
            if full:
                result.update({k: motion[k] for k in ("mask", "sparse_deformed", "deformation")})
                image = source.image.expand(b, *source.image.shape[1:])
                result["deformed"] = deform_input(image, motion["deformation"], self.align_corners)
            out = deform_input(out, motion["deformation"], self.align_corners)
            occlusion_map = motion.get("occlusion_map")
            if occlusion_map is not None:
                result["occlusion_map"] = occlusion_map
                if out.shape[2:] != occlusion_map.shape[2:]:
                    occlusion_map = F.interpolate(occlusion_map, size=out.shape[2:], mode="bilinear",
                                                  align_corners=self.align_corners)
                out = out * occlusion_map  # Eq. 8: occluded features are left for the decoder to inpaint
            if not full and torch.is_autocast_enabled(out.device.type):  # grid_sample ran in fp32: back to the
                out = out.to(torch.get_autocast_dtype(out.device.type))  # autocast dtype for the residual stream
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        result["prediction"] = torch.sigmoid(self.final(out))
        return result
