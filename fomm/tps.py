"""Random affine + thin-plate-spline warps for the equivariance losses (Sec. 3.3, Eq. 11-13)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fomm.geometry import make_coordinate_grid


class Transform:
    """A random warp T per sample: affine θ = I + N(0, σ_affine) plus TPS Σ_c w_c r_c² log(r_c + 1e-6), r = L1."""

    def __init__(self, bs: int, sigma_affine: float, sigma_tps: float | None = None,
                 points_tps: int | None = None, theta: Tensor | None = None,
                 control_params: Tensor | None = None) -> None:
        self.bs = bs
        if theta is None:
            noise = torch.randn(bs, 2, 3) * sigma_affine
            theta = noise + torch.eye(2, 3).view(1, 2, 3)
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
        warped = torch.matmul(theta[..., :2], coordinates.unsqueeze(-1)) + theta[..., 2:]
        warped = warped.squeeze(-1)
        if self.tps:
            control_points = self.control_points.to(coordinates)
            control_params = self.control_params.to(coordinates)
            distances = (coordinates.unsqueeze(2) - control_points.unsqueeze(1)).abs().sum(-1)  # B×N×P
            radial = distances**2 * torch.log(distances + 1e-6) * control_params  # B×N×P
            warped = warped + radial.sum(dim=2, keepdim=True)  # the same offset on x and y
        return warped

    def jacobian(self, coordinates: Tensor) -> Tensor:
        """∇T at the points by autograd (kept in the graph).  # B×N×2×2"""
        if not coordinates.requires_grad:
            coordinates = coordinates.detach().requires_grad_(True)
        warped = self.warp_coordinates(coordinates)
        grad_x = torch.autograd.grad(warped[..., 0].sum(), coordinates, create_graph=True)[0]
        grad_y = torch.autograd.grad(warped[..., 1].sum(), coordinates, create_graph=True)[0]
        return torch.stack([grad_x, grad_y], dim=-2)

    def transform_frame(self, frame: Tensor, align_corners: bool = False) -> Tensor:
        """Sample the frame at T(z) for every pixel z, with reflection padding.  # B×C×H×W"""
        h, w = frame.shape[2:]
        grid = make_coordinate_grid((h, w), frame.dtype, frame.device).view(1, h * w, 2).expand(self.bs, -1, -1)
        grid = self.warp_coordinates(grid).view(self.bs, h, w, 2)
        # reflection padding: the warped driving frame must not gain black borders
        return F.grid_sample(frame, grid, padding_mode="reflection", align_corners=align_corners)
