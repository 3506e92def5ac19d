"""Geometry against hand-computed values: grids, gaussians, soft-argmax, anti-aliasing, TPS."""

import math

import numpy as np
import pytest
import torch

from fomm.blocks import AntiAliasInterpolation2d, ImagePyramid, gaussian_kernel
from fomm.geometry import Transform, heatmap_to_keypoints, kp2gaussian, make_coordinate_grid

pytestmark = pytest.mark.numeric


def test_coordinate_grid_3x3_values():
    grid = make_coordinate_grid((3, 3), torch.float32)
    assert grid.shape == (3, 3, 2)
    assert grid[..., 0].tolist() == [[-1, 0, 1]] * 3  # x along columns
    assert grid[..., 1].tolist() == [[-1, -1, -1], [0, 0, 0], [1, 1, 1]]  # y along rows


def test_coordinate_grid_non_square():
    grid = make_coordinate_grid((2, 5), torch.float32)
    assert grid[0, :, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert grid[:, 0, 1].tolist() == [-1.0, 1.0]


def test_kp2gaussian_hand_values():
    kp = torch.tensor([[[0.0, 0.0]]])  # B×K×2 at the centre of a 3×3 grid
    g = kp2gaussian({"value": kp}, (3, 3), kp_variance=0.01)
    assert g.shape == (1, 1, 3, 3)
    assert g[0, 0, 1, 1].item() == pytest.approx(1.0)
    assert g[0, 0, 1, 2].item() == pytest.approx(math.exp(-50))  # ‖(1,0)‖² = 1 → exp(-0.5/0.01)
    assert g[0, 0, 0, 0].item() == pytest.approx(math.exp(-100))  # corner: ‖(1,1)‖² = 2


def test_soft_argmax_of_one_hot_is_grid_point():
    heat = torch.zeros(1, 1, 5, 5)
    heat[0, 0, 3, 1] = 1  # row 3 → y = 0.5, column 1 → x = -0.5
    assert heatmap_to_keypoints(heat)[0, 0].tolist() == [-0.5, 0.5]


def test_soft_argmax_of_gaussian_returns_its_centre():
    p = torch.tensor([[[0.2, -0.3], [-0.45, 0.1]]])
    g = kp2gaussian(p, (65, 65), 0.01)
    g = g / g.sum(dim=(2, 3), keepdim=True)
    assert torch.allclose(heatmap_to_keypoints(g), p, atol=1e-5)


def test_anti_alias_kernel_half_scale_by_hand():
    # scale 0.5: sigma = 0.5, size = 2·round(2) + 1 = 5, 1-D weights exp(-d²/(2·0.25)) for d = -2..2
    k = gaussian_kernel(0.5)
    one_d = np.exp(-np.arange(-2, 3) ** 2 / 0.5)
    expected = np.outer(one_d, one_d) / one_d.sum() ** 2
    assert k.shape == (5, 5)
    assert np.allclose(k.numpy(), expected, atol=1e-7)
    assert k[2, 2].item() == pytest.approx(1 / (1 + 2 * math.exp(-2) + 2 * math.exp(-8)) ** 2, rel=1e-6)


def test_anti_alias_quarter_scale_shape_and_buffer():
    down = AntiAliasInterpolation2d(3, 0.25)  # sigma 1.5 → 13×13, as kp_detector.down.weight of vox-256
    assert down.weight.shape == (3, 1, 13, 13)
    assert down.weight.sum(dim=(2, 3)).allclose(torch.ones(3, 1))
    x = torch.full((1, 3, 64, 64), 0.7)
    y = down(x)
    assert y.shape == (1, 3, 16, 16)
    assert torch.allclose(y[..., 2:-2, 2:-2], torch.full_like(y[..., 2:-2, 2:-2], 0.7), atol=1e-6)


def test_anti_alias_keeps_every_fourth_pixel_of_the_blur():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 32, 32)
    down = AntiAliasInterpolation2d(1, 0.25)
    blurred = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (6, 6, 6, 6)), down.weight)
    assert torch.equal(down(x), blurred[..., ::4, ::4])
    # the strided conv computes only the kept pixels; channels_last input (the training layout) gives the same
    assert torch.allclose(down(x.contiguous(memory_format=torch.channels_last)), blurred[..., ::4, ::4], atol=1e-7)


def test_pyramid_keys_and_identity_level():
    pyr = ImagePyramid((1, 0.5, 0.25), 3)
    x = torch.rand(2, 3, 32, 32)
    out = pyr(x)
    assert sorted(out) == ["prediction_0.25", "prediction_0.5", "prediction_1"]
    assert torch.equal(out["prediction_1"], x)
    assert out["prediction_0.25"].shape == (2, 3, 8, 8)


def test_tps_with_zero_parameters_is_identity():
    t = Transform(2, sigma_affine=0.0, sigma_tps=0.0, points_tps=5)
    pts = torch.rand(2, 7, 2) * 2 - 1
    assert torch.allclose(t.warp_coordinates(pts), pts, atol=1e-7)
    jac = t.jacobian(pts)
    assert torch.allclose(jac, torch.eye(2).expand(2, 7, 2, 2), atol=1e-6)
    frame = torch.rand(2, 3, 16, 16)
    grid = make_coordinate_grid((16, 16), torch.float32).expand(2, 16, 16, 2)
    expected = torch.nn.functional.grid_sample(frame, grid, padding_mode="reflection", align_corners=False)
    assert torch.allclose(t.transform_frame(frame), expected, atol=1e-6)


def test_tps_hand_value_one_control_point():
    params = torch.zeros(1, 1, 25)
    params[0, 0, 0] = 1.0  # control point (-1, -1)
    t = Transform(1, 0.0, points_tps=5, theta=torch.eye(2, 3).view(1, 2, 3), control_params=params)
    out = t.warp_coordinates(torch.zeros(1, 1, 2))  # r = |0+1| + |0+1| = 2 (L1)
    offset = 4 * math.log(2 + 1e-6)
    assert out[0, 0].tolist() == pytest.approx([offset, offset], rel=1e-6)


def test_affine_translation_and_its_jacobian():
    theta = torch.tensor([[[2.0, 0.0, 0.1], [0.0, 1.0, -0.2]]])
    t = Transform(1, 0.0, theta=theta)
    pts = torch.tensor([[[0.5, 0.5]]])
    assert t.warp_coordinates(pts)[0, 0].tolist() == pytest.approx([1.1, 0.3])
    assert t.jacobian(pts)[0, 0].tolist() == [[2.0, 0.0], [0.0, 1.0]]
