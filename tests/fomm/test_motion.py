"""Sparse motions, dense deformation and relative motion against hand-computed values and invariants."""

import dataclasses

import numpy as np
import pytest
import torch

from fomm.animation import convex_hull_area, normalize_kp
from fomm.config.schema import load_config
from fomm.dense_motion import heatmap_representation, sparse_motions
from fomm.generator import OcclusionAwareGenerator, deform_input
from fomm.geometry import Transform, kp2gaussian, make_coordinate_grid

pytestmark = pytest.mark.numeric


def test_sparse_motion_with_known_jacobian():
    kp_d = {"value": torch.tensor([[[0.5, 0.0]]]), "jacobian": torch.tensor([[[[2.0, 0.0], [0.0, 1.0]]]])}
    kp_s = {"value": torch.tensor([[[0.0, 0.0]]]), "jacobian": torch.eye(2).view(1, 1, 2, 2)}
    motion = sparse_motions((3, 3), kp_d, kp_s)  # B×(K+1)×h×w×2
    assert motion.shape == (1, 2, 3, 3, 2)
    assert torch.equal(motion[0, 0], make_coordinate_grid((3, 3), torch.float32))  # background = identity
    # z = (1, 1) (row 2, column 2): J = J_s J_d⁻¹ = diag(0.5, 1); 0.5·(1 − 0.5) + 0 = 0.25, 1·(1 − 0) + 0 = 1
    assert motion[0, 1, 2, 2].tolist() == pytest.approx([0.25, 1.0])
    # z = (−1, 0) (row 1, column 0): 0.5·(−1.5) = −0.75, 0
    assert motion[0, 1, 1, 0].tolist() == pytest.approx([-0.75, 0.0])


def test_sparse_motion_without_jacobian_is_a_translation():
    kp_d = {"value": torch.tensor([[[0.2, 0.1]]])}
    kp_s = {"value": torch.tensor([[[-0.3, 0.4]]])}
    motion = sparse_motions((4, 4), kp_d, kp_s)
    shift = torch.tensor([-0.5, 0.3])
    assert torch.allclose(motion[0, 1], make_coordinate_grid((4, 4), torch.float32) + shift)


def test_heatmap_representation_is_zero_for_identical_keypoints():
    kp = {"value": torch.rand(2, 4, 2) * 2 - 1}
    heat = heatmap_representation((8, 8), kp, kp2gaussian(kp, (8, 8), 0.01), 0.01)
    assert heat.shape == (2, 5, 1, 8, 8)
    assert torch.count_nonzero(heat) == 0


def test_identity_motion_gives_identity_deformation(tiny_config_path):
    cfg = load_config(tiny_config_path).model_params
    gen = OcclusionAwareGenerator.from_config(cfg).eval()
    source = torch.rand(2, 3, 64, 64)
    kp = {"value": torch.rand(2, 5, 2) * 1.6 - 0.8, "jacobian": torch.eye(2).expand(2, 5, 2, 2).clone()}
    with torch.no_grad():
        out = gen(source, kp_driving=kp, kp_source=kp)
    h, w = out["deformation"].shape[1:3]
    identity = make_coordinate_grid((h, w), torch.float32).expand(2, h, w, 2)
    assert torch.allclose(out["deformation"], identity, atol=1e-6)
    # every sparse deformation is then the downsampled source resampled on the identity grid
    assert torch.allclose(out["sparse_deformed"][:, 0], out["sparse_deformed"][:, 3], atol=1e-6)


def test_identity_grid_warp_hand_values_for_both_conventions():
    ones = torch.ones(1, 1, 4, 4)
    grid = make_coordinate_grid((4, 4), torch.float32).unsqueeze(0)  # 1×4×4×2, ±1 at the corner pixels' centres
    # align_corners=False reads ±1 as the outer pixel edges: column j is sampled at 4j/3 − 0.5 px, so the first and
    # last columns (and rows) are half zero padding: 0.5 on the edges, 0.25 in the corners
    shrunk = deform_input(ones, grid, align_corners=False)[0, 0]
    assert shrunk[0, 0].item() == pytest.approx(0.25) and shrunk[0, 1].item() == pytest.approx(0.5)
    assert shrunk[1, 1].item() == pytest.approx(1.0)
    image = torch.rand(1, 3, 4, 4)
    assert torch.allclose(deform_input(image, grid, align_corners=True), image, atol=1e-6)
    # a half-resolution identity field, resized with the same convention, is still the identity
    half = make_coordinate_grid((2, 2), torch.float32).unsqueeze(0)
    assert torch.allclose(deform_input(image, half, align_corners=True), image, atol=1e-6)
    assert not torch.allclose(deform_input(image, half, align_corners=False), image, atol=1e-2)


def test_identity_motion_returns_the_source_with_aligned_corners(tiny_config_path):
    cfg = load_config(tiny_config_path).model_params
    common = dataclasses.replace(cfg.common_params, align_corners=True)
    gen = OcclusionAwareGenerator.from_config(dataclasses.replace(cfg, common_params=common)).eval()
    source = torch.rand(2, 3, 64, 64)
    kp = {"value": torch.rand(2, 5, 2) * 1.6 - 0.8, "jacobian": torch.eye(2).expand(2, 5, 2, 2).clone()}
    with torch.no_grad():
        out = gen(source, kp_driving=kp, kp_source=kp)
    assert torch.allclose(out["deformed"], source, atol=1e-5)  # warped at 64×64 by a field computed at 32×32
    with torch.no_grad():
        default = OcclusionAwareGenerator.from_config(cfg).eval()(source, kp_driving=kp, kp_source=kp)
    assert (default["deformed"] - source).abs().mean() > 0.05  # PyTorch's default convention shrinks and darkens


def test_equivariance_warp_follows_the_model_convention():
    frame = torch.rand(2, 3, 8, 8)
    identity = Transform(2, 0.0, 0.0, points_tps=5)
    assert torch.allclose(identity.transform_frame(frame, align_corners=True), frame, atol=1e-6)
    assert not torch.allclose(identity.transform_frame(frame, align_corners=False), frame, atol=1e-2)
    # a pure shift by one pixel (2/(w−1) in grid units) moves the frame by exactly one column
    theta = torch.tensor([[1.0, 0.0, 2 / 7], [0.0, 1.0, 0.0]]).expand(2, 2, 3)
    shifted = Transform(2, 0.0, theta=theta).transform_frame(frame, align_corners=True)
    assert torch.allclose(shifted[..., :-1], frame[..., 1:], atol=1e-5)


def test_normalize_kp_hand_values():
    src = {"value": torch.tensor([[[0.1, 0.2]]]), "jacobian": torch.tensor([[[[1.0, 0.5], [0.0, 1.0]]]])}
    drv = {"value": torch.tensor([[[0.3, 0.3]]]), "jacobian": torch.tensor([[[[2.0, 0.0], [0.0, 1.0]]]])}
    init = {"value": torch.tensor([[[0.2, 0.1]]]), "jacobian": torch.eye(2).view(1, 1, 2, 2)}
    out = normalize_kp(src, drv, init, use_relative_movement=True, use_relative_jacobian=True)
    assert out["value"][0, 0].tolist() == pytest.approx([0.2, 0.4])
    # J_d · J_init⁻¹ · J_s = diag(2, 1) · [[1, .5], [0, 1]] = [[2, 1], [0, 1]]
    assert torch.allclose(out["jacobian"][0, 0], torch.tensor([[2.0, 1.0], [0.0, 1.0]]))
    absolute = normalize_kp(src, drv, init)
    assert torch.equal(absolute["value"], drv["value"])


def test_normalize_kp_with_first_driving_frame_returns_source():
    src = {"value": torch.rand(1, 6, 2), "jacobian": torch.rand(1, 6, 2, 2) + torch.eye(2)}
    drv = {"value": torch.rand(1, 6, 2), "jacobian": torch.rand(1, 6, 2, 2) + torch.eye(2)}
    out = normalize_kp(src, drv, drv, adapt_movement_scale=True, use_relative_movement=True,
                       use_relative_jacobian=True)
    assert torch.allclose(out["value"], src["value"])
    assert torch.allclose(out["jacobian"], src["jacobian"], atol=1e-5)


def test_adapt_movement_scale_from_convex_hull_areas():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]])  # interior point ignored
    assert convex_hull_area(square) == pytest.approx(1.0)
    assert convex_hull_area(np.array([[0, 0], [2, 0], [0, 3]])) == pytest.approx(3.0)
    src = {"value": torch.tensor([[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]])}  # area 0.25
    init = {"value": torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])}  # area 1
    drv = {"value": init["value"] + 0.2}
    out = normalize_kp(src, drv, init, adapt_movement_scale=True, use_relative_movement=True)
    assert torch.allclose(out["value"], src["value"] + 0.1)  # s = sqrt(.25)/sqrt(1) = 0.5
