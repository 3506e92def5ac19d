"""Analytic gradients of the geometry against finite differences (torch.autograd.gradcheck, float64, small sizes):
the warps of the equivariance losses and their Jacobian, keypoints and Jacobians from heatmaps, gaussian heatmaps,
the sparse motions and the warp of the source by grid_sample."""

import pytest
import torch
from torch.autograd import gradcheck

from fomm.dense_motion import deform_sources, sparse_motions
from fomm.geometry import Transform, heatmap_to_keypoints, inverse_2x2, kp2gaussian
from fomm.keypoint_detector import KPDetector

pytestmark = pytest.mark.numeric


def rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.rand(*shape, dtype=torch.float64) * 2 - 1).mul(scale).requires_grad_(True)


def warp_params(bs: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    theta = (torch.eye(2, 3, dtype=torch.float64) + 0.1 * torch.randn(bs, 2, 3, dtype=torch.float64))
    control_params = 0.05 * torch.randn(bs, 1, 25, dtype=torch.float64)  # 5×5 control points
    return theta.requires_grad_(True), control_params.requires_grad_(True)


def test_affine_and_tps_warp_gradients():
    theta, control_params = warp_params()
    points = rand(2, 7, 2, scale=0.9)  # B×N×2, off the control grid (the L1 distance has kinks on it)

    def warp(points, theta, control_params):
        return Transform(2, 0.0, points_tps=5, theta=theta, control_params=control_params).warp_coordinates(points)

    def affine(points, theta):
        return Transform(2, 0.0, theta=theta).warp_coordinates(points)

    assert gradcheck(warp, (points, theta, control_params))
    assert gradcheck(affine, (points, theta))


def test_warp_jacobian_and_its_gradients():
    """Transform.jacobian (autograd in the graph) equals finite differences of the warp, and its own gradients
    (what the equivariance Jacobian loss backpropagates) are right too."""
    theta, control_params = warp_params()
    points = rand(2, 5, 2, scale=0.9)

    def jacobian(points, theta, control_params):
        return Transform(2, 0.0, points_tps=5, theta=theta, control_params=control_params).jacobian(points)

    transform = Transform(2, 0.0, points_tps=5, theta=theta.detach(), control_params=control_params.detach())
    eps = 1e-6
    for axis in range(2):  # column `axis` of ∇T: (T(z + eps e_axis) − T(z − eps e_axis)) / 2eps
        step = torch.zeros(2, dtype=torch.float64)
        step[axis] = eps
        z = points.detach()
        numeric = (transform.warp_coordinates(z + step) - transform.warp_coordinates(z - step)) / (2 * eps)
        torch.testing.assert_close(transform.jacobian(z)[..., axis].detach(), numeric, rtol=1e-6, atol=1e-8)
    assert gradcheck(jacobian, (points, theta, control_params))


def test_keypoints_and_jacobians_from_heatmaps_gradients():
    """The detector's head: softmax with temperature → soft-argmax keypoints, heatmap-weighted Jacobian maps."""
    det = KPDetector(block_expansion=4, num_kp=2, num_channels=3, max_features=8, num_blocks=1, temperature=0.1,
                     estimate_jacobian=True, pad=3).double()
    det.predictor = torch.nn.Identity()  # the head alone: features in, keypoints out
    torch.nn.init.normal_(det.jacobian.weight, std=0.05)  # non-trivial Jacobians (zero at init)
    features = rand(1, det.kp.in_channels, 4, 4)  # 7×7 kernels, padding 3: 4×4 heatmaps

    def head(features):
        kp = det(features)
        return kp["value"], kp["jacobian"]

    assert gradcheck(head, (features,))
    assert gradcheck(heatmap_to_keypoints, (torch.rand(2, 3, 4, 5, dtype=torch.float64).requires_grad_(True),))


def test_gaussian_heatmap_gradients():
    kp = rand(2, 3, 2, scale=0.8)
    assert gradcheck(lambda v: kp2gaussian({"value": v}, (6, 7), 0.1), (kp,))


def test_sparse_motion_and_source_warp_gradients():
    """Eq. 4's motions (Jacobians inverted by torch.inverse) and the bilinear warp of the source through them."""
    value_d, value_s = rand(1, 2, 2, scale=0.5), rand(1, 2, 2, scale=0.5)
    jac_d = (torch.eye(2, dtype=torch.float64) + 0.1 * torch.randn(1, 2, 2, 2, dtype=torch.float64))
    jac_s = (torch.eye(2, dtype=torch.float64) + 0.1 * torch.randn(1, 2, 2, 2, dtype=torch.float64))
    jac_d, jac_s = jac_d.requires_grad_(True), jac_s.requires_grad_(True)
    source = torch.rand(1, 2, 5, 5, dtype=torch.float64).requires_grad_(True)

    def motions(value_d, jac_d, value_s, jac_s):
        return sparse_motions((5, 5), {"value": value_d, "jacobian": jac_d}, {"value": value_s, "jacobian": jac_s})

    def warped(source, value_d, jac_d, value_s, jac_s):
        return deform_sources(source, motions(value_d, jac_d, value_s, jac_s))

    assert gradcheck(motions, (value_d, jac_d, value_s, jac_s))
    assert gradcheck(warped, (source, value_d, jac_d, value_s, jac_s))
    assert gradcheck(inverse_2x2, (jac_d,))  # the exported graph's closed-form inverse
