"""Dense motion network: K+1 sparse motions blended by soft masks, plus an occlusion map (Sec. 3.2, Eq. 4-7)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fomm.blocks import AntiAliasInterpolation2d, Hourglass
from fomm.geometry import Keypoints, inverse_2x2, kp2gaussian, make_coordinate_grid


def heatmap_representation(spatial_size: tuple[int, int], kp_driving: Keypoints, source_heatmap: Tensor,
                           kp_variance: float) -> Tensor:
    """Eq. 6: gaussian(kp_driving) − `source_heatmap` (gaussian(kp_source), MotionSource's), with a zero
    background map first.  # B×(K+1)×1×h×w"""
    heatmap = kp2gaussian(kp_driving, spatial_size, kp_variance) - source_heatmap
    zeros = heatmap.new_zeros(heatmap.shape[0], 1, *spatial_size)
    return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)


def sparse_motions(spatial_size: tuple[int, int], kp_driving: Keypoints, kp_source: Keypoints) -> Tensor:
    """Eq. 4: z ↦ J_k (z − kp_driving_k) + kp_source_k, J_k = J_source_k J_driving_k⁻¹; identity first: the
    sampling grids from driving to source coordinates.  # B×(K+1)×h×w×2"""
    h, w = spatial_size
    value_d, value_s = kp_driving["value"], kp_source["value"]  # B×K×2
    b, k, _ = value_d.shape
    identity = make_coordinate_grid((h, w), value_s.dtype, value_s.device).view(1, 1, h, w, 2)
    coords = identity - value_d.view(b, k, 1, 1, 2)  # B×K×h×w×2
    if "jacobian" in kp_driving and "jacobian" in kp_source:
        # ONNX has no matrix inverse: the exported graph takes the closed form (the training step keeps torch's,
        # whose gradients the parity file checks)
        inverse = inverse_2x2 if torch.onnx.is_in_onnx_export() else torch.inverse
        jacobian = torch.matmul(kp_source["jacobian"], inverse(kp_driving["jacobian"]))  # B×K×2×2
        coords = torch.einsum("bkij,bkhwj->bkhwi", jacobian, coords)
    driving_to_source = coords + value_s.view(b, k, 1, 1, 2)
    return torch.cat([identity.expand(b, 1, h, w, 2), driving_to_source], dim=1)


def deform_sources(source: Tensor, motions: Tensor, align_corners: bool = False) -> Tensor:
    """Warp the source by each sparse motion.  # B×(K+1)×C×h×w"""
    b, c, h, w = source.shape
    n = motions.shape[1]
    repeated = source.unsqueeze(1).expand(b, n, c, h, w).reshape(b * n, c, h, w)
    deformed = F.grid_sample(repeated, motions.reshape(b * n, h, w, 2), align_corners=align_corners)
    return deformed.view(b, n, c, h, w)


@dataclass(frozen=True)
class MotionSource:
    """What the dense motion network needs of the source alone (computed once per source when animating)."""

    image: Tensor  # 1×C×h×w, the source at the network's scale
    heatmap: Tensor  # 1×K×h×w, gaussian(kp_source)


class DenseMotionNetwork(nn.Module):
    """Predicts masks over the K+1 sparse motions (Eq. 7), the dense deformation and an occlusion map."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int, num_channels: int,
                 estimate_occlusion_map: bool = False, scale_factor: float = 1, kp_variance: float = 0.01,
                 align_corners: bool = False) -> None:
        super().__init__()
        self.hourglass = Hourglass(block_expansion, in_features=(num_kp + 1) * (num_channels + 1),
                                   max_features=max_features, num_blocks=num_blocks)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=(7, 7), padding=(3, 3))
        self.occlusion = (nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3))
                          if estimate_occlusion_map else None)
        self.kp_variance = kp_variance
        self.align_corners = align_corners
        # scale 1: no module state, as in the original's keys
        self.down = AntiAliasInterpolation2d(num_channels, scale_factor) if scale_factor != 1 else nn.Identity()

    def prepare_source(self, source_image: Tensor, kp_source: Keypoints) -> MotionSource:
        image = self.down(source_image)
        return MotionSource(image=image, heatmap=kp2gaussian(kp_source, image.shape[2:], self.kp_variance))

    def forward(self, kp_driving: Keypoints, kp_source: Keypoints, source: MotionSource) -> dict[str, Tensor]:
        """Sparse deformations, masks, dense deformation (and occlusion map) of `source` (prepare_source's)."""
        b = kp_driving["value"].shape[0]
        _, c, h, w = source.image.shape
        heatmaps = heatmap_representation((h, w), kp_driving, source.heatmap, self.kp_variance)  # B×(K+1)×1×h×w
        motions = sparse_motions((h, w), kp_driving, kp_source)  # B×(K+1)×h×w×2
        sparse_deformed = deform_sources(source.image.expand(b, c, h, w), motions,
                                         self.align_corners)  # B×(K+1)×C×h×w
        features = self.hourglass(torch.cat([heatmaps, sparse_deformed], dim=2).view(b, -1, h, w))
        mask = F.softmax(self.mask(features), dim=1)  # B×(K+1)×h×w
        deformation = (motions * mask.unsqueeze(-1)).sum(dim=1)  # B×h×w×2
        out = {"sparse_deformed": sparse_deformed, "mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(features))  # B×1×h×w
        return out
