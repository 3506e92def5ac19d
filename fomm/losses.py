"""Loss terms of Sec. 3.3: perceptual pyramid (Eq. 9), equivariance (Eq. 11, 13), LSGAN and feature matching;
and our optional keypoint separation prior."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fomm.tps import Transform


def pyramid_perceptual_loss(vgg: Callable[..., list[Tensor]], pyramid_pred: dict[str, Tensor],
                            pyramid_real: dict[str, Tensor], weights: Sequence[float]) -> Tensor:
    """Eq. 9, Σ_levels Σ_i w_i · mean |F_i(pred) − F_i(real)| (real without gradient); VGG stops at the deepest
    layer with a non-zero weight."""
    total = next(iter(pyramid_pred.values())).new_zeros(())
    used = max((i + 1 for i, w in enumerate(weights) if w != 0), default=0)
    if used == 0:
        return total
    for key, pred in pyramid_pred.items():
        with torch.no_grad():
            real = vgg(pyramid_real[key], num_slices=used)
        total = total + feature_matching_loss(vgg(pred, num_slices=used), real, weights)
    return total


def equivariance_value_loss(kp_driving: Tensor, kp_transformed: Tensor, transform: Transform) -> Tensor:
    """Eq. 11: mean |kp_driving − T(kp of the warped frame)|."""
    return (kp_driving - transform.warp_coordinates(kp_transformed)).abs().mean()


def equivariance_jacobian_loss(jacobian_driving: Tensor, kp_transformed: Tensor, jacobian_transformed: Tensor,
                               transform: Transform) -> Tensor:
    """Eq. 13: mean |I − J_driving⁻¹ · ∇T(kp_transformed) · J_transformed|."""
    composed = torch.matmul(transform.jacobian(kp_transformed), jacobian_transformed)  # B×K×2×2
    value = torch.matmul(torch.inverse(jacobian_driving), composed)
    eye = torch.eye(2, dtype=value.dtype, device=value.device).view(1, 1, 2, 2)
    return (eye - value).abs().mean()


def keypoint_separation_loss(kp: Tensor, sigma: float) -> Tensor:
    """Zhang et al.'s separation prior (CVPR 2018; not in the paper, docs/learning.md): the mean over pairs i ≠ j
    and the batch of exp(−|k_i − k_j|² / 2σ²), 1 when all keypoints coincide, → 0 beyond a few σ.  # kp: B×K×2"""
    k = kp.shape[1]
    if k < 2:
        return kp.new_zeros(())
    d2 = (kp.unsqueeze(2) - kp.unsqueeze(1)).pow(2).sum(-1)  # B×K×K
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=kp.device)
    return torch.exp(-d2 / (2 * sigma**2))[:, off_diagonal].mean()


def generator_gan_loss(prediction_maps: Sequence[Tensor]) -> Tensor:
    """LSGAN generator term: Σ_scales mean (1 − D(pred))²."""
    return sum(((1 - p) ** 2).mean() for p in prediction_maps)  # type: ignore[return-value]


def discriminator_gan_loss(real_maps: Sequence[Tensor], fake_maps: Sequence[Tensor]) -> Tensor:
    """LSGAN discriminator term: Σ_scales mean[(1 − D(real))² + D(fake)²]."""
    return sum(((1 - r) ** 2 + f**2).mean() for r, f in zip(real_maps, fake_maps))  # type: ignore[return-value]


def feature_matching_loss(real_features: Sequence[Tensor], fake_features: Sequence[Tensor],
                          weights: Sequence[float]) -> Tensor:
    """Σ_i w_i · mean |F_i(real) − F_i(pred)| over discriminator blocks (or VGG slices: Eq. 9's terms)."""
    total = fake_features[0].new_zeros(())
    for weight, a, b in zip(weights, real_features, fake_features):
        if weight != 0:
            total = total + weight * (a - b).abs().mean()
    return total
