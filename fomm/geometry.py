"""Pure geometry of keypoints: coordinate grids, gaussian heatmaps and soft-argmax (Sec. 3.1, Eq. 6)."""

from __future__ import annotations

from typing import TypedDict

import torch
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
