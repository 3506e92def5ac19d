"""Pure geometry of keypoints: coordinate grids, gaussian heatmaps and soft-argmax (Sec. 3.1, Eq. 6); random
affine + thin-plate-spline warps for the equivariance losses (Sec. 3.3, Eq. 11-13)."""

from __future__ import annotations

from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor


class Keypoints(TypedDict, total=False):
    """Keypoints in [-1, 1], (x, y) order; `jacobian` present when the model estimates local affine maps."""

    value: Tensor  # B×K×2
    jacobian: Tensor  # B×K×2×2


def make_coordinate_grid(spatial_size: tuple[int, int], dtype: torch.dtype,
                         device: torch.device | str | None = None) -> Tensor:
    """Grid of (x, y) in [-1, 1]: x = 2j/(w-1) - 1 along columns, y = 2i/(h-1) - 1 along rows.  # h×w×2"""
    h, w = spatial_size
    x = 2 * (torch.arange(w, dtype=dtype, device=device) / (w - 1)) - 1
    y = 2 * (torch.arange(h, dtype=dtype, device=device) / (h - 1)) - 1
    return torch.stack([x.view(1, w).expand(h, w), y.view(h, 1).expand(h, w)], dim=2)


def kp2gaussian(kp: Keypoints | Tensor, spatial_size: tuple[int, int], kp_variance: float) -> Tensor:
    """Gaussian heatmap exp(-0.5 ||z - p||² / variance) of each keypoint over the grid.  # ...×K×h×w"""
    mean = kp["value"] if isinstance(kp, dict) else kp  # ...×K×2
    grid = make_coordinate_grid(spatial_size, mean.dtype, mean.device)  # h×w×2
    lead = mean.dim() - 1
    diff = grid.view((1,) * lead + grid.shape) - mean.view(mean.shape[:lead] + (1, 1, 2))
    return torch.exp(-0.5 * (diff**2).sum(-1) / kp_variance)


def heatmap_to_keypoints(heatmap: Tensor) -> Tensor:
    """Soft-argmax: the heatmap-weighted mean of the grid (heatmap sums to 1 per keypoint).  # B×K×2"""
    grid = make_coordinate_grid(heatmap.shape[2:], heatmap.dtype, heatmap.device)  # h×w×2
    return (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))


def inverse_2x2(m: Tensor) -> Tensor:
    """Inverse of ...×2×2 matrices in closed form, [[d, −b], [−c, a]] / (ad − bc) (exportable: no LU).  # ...×2×2"""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = (a * d - b * c).unsqueeze(-1).unsqueeze(-1)
    return torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / det


def detach_kp(kp: Keypoints) -> Keypoints:
    return {k: v.detach() for k, v in kp.items()}  # type: ignore[return-value]


def expand_kp(kp: Keypoints, n: int) -> Keypoints:
    """One image's keypoints for each of n frames, as views.  # 1×K×2 → n×K×2"""
    return {k: v.expand(n, *v.shape[1:]) for k, v in kp.items()}  # type: ignore[return-value]


class Transform:
    """A random warp T per sample: affine θ = I + N(0, σ_affine) plus TPS Σ_c w_c r_c² log(r_c + 1e-6), r = L1."""

    def __init__(self, bs: int, sigma_affine: float, sigma_tps: float | None = None,
                 points_tps: int | None = None, theta: Tensor | None = None,
                 control_params: Tensor | None = None) -> None:
        self.bs = bs
        if theta is None:
            theta = torch.randn(bs, 2, 3) * sigma_affine + torch.eye(2, 3).view(1, 2, 3)
        self.theta = theta  # B×2×3
        self.tps = points_tps is not None and (sigma_tps is not None or control_params is not None)
        if self.tps:
            # ±1, ±0.5, 0: exact in any float dtype; cast to the coordinates' dtype where used
            self.control_points = make_coordinate_grid((points_tps, points_tps), theta.dtype).view(1, -1, 2)  # 1×P×2
            if control_params is None:
                control_params = torch.randn(bs, 1, points_tps**2) * sigma_tps
            self.control_params = control_params  # B×1×P

    def warp_coordinates(self, coordinates: Tensor) -> Tensor:
        """Apply T to points.  # B×N×2 → B×N×2"""
        theta = self.theta.to(coordinates).unsqueeze(1)  # B×1×2×3
        warped = (torch.matmul(theta[..., :2], coordinates.unsqueeze(-1)) + theta[..., 2:]).squeeze(-1)
        if self.tps:
            distances = (coordinates.unsqueeze(2) - self.control_points.to(coordinates).unsqueeze(1)).abs().sum(-1)
            radial = distances**2 * torch.log(distances + 1e-6) * self.control_params.to(coordinates)  # B×N×P
            warped = warped + radial.sum(dim=2, keepdim=True)  # the same offset on x and y
        return warped

    def jacobian(self, coordinates: Tensor) -> Tensor:
        """∇T at the points by autograd (kept in the graph).  # B×N×2×2"""
        if not coordinates.requires_grad:
            coordinates = coordinates.detach().requires_grad_(True)
        warped = self.warp_coordinates(coordinates)
        grads = [torch.autograd.grad(warped[..., i].sum(), coordinates, create_graph=True)[0] for i in (0, 1)]
        return torch.stack(grads, dim=-2)  # rows ∇T_x, ∇T_y

    def transform_frame(self, frame: Tensor, align_corners: bool = False) -> Tensor:
        """Sample the frame at T(z) for every pixel z, with reflection padding.  # B×C×H×W"""
        h, w = frame.shape[2:]
        grid = make_coordinate_grid((h, w), frame.dtype, frame.device).view(1, h * w, 2).expand(self.bs, -1, -1)
        grid = self.warp_coordinates(grid).view(self.bs, h, w, 2)
        # reflection padding: the warped driving frame must not gain black borders
        return F.grid_sample(frame, grid, padding_mode="reflection", align_corners=align_corners)
