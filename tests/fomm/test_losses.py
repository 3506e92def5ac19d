"""Loss terms on hand-made cases: zero when they should be, known values for the GAN terms."""

import math

import pytest
import torch

from fomm.blocks import ImagePyramid
from fomm.checkpoint import CheckpointError
from fomm.geometry import Transform
from fomm.losses import (
    discriminator_gan_loss,
    equivariance_jacobian_loss,
    equivariance_value_loss,
    feature_matching_loss,
    generator_gan_loss,
    keypoint_separation_loss,
    pyramid_perceptual_loss,
)
from fomm.vgg import Vgg19

pytestmark = pytest.mark.numeric


def test_perceptual_is_zero_on_identical_images_and_positive_otherwise():
    vgg = Vgg19()
    pyr = ImagePyramid((1, 0.5), 3)
    x = torch.rand(1, 3, 32, 32)
    assert pyramid_perceptual_loss(vgg, pyr(x), pyr(x), (10, 10, 10, 10, 10)).item() == 0
    assert pyramid_perceptual_loss(vgg, pyr(x), pyr(torch.rand(1, 3, 32, 32)), (10,) * 5).item() > 0


def test_perceptual_stops_vgg_at_the_deepest_weighted_layer_with_the_same_value():
    vgg = Vgg19()
    pyr = ImagePyramid((1, 0.5), 3)
    pred, real = pyr(torch.rand(2, 3, 32, 32)), pyr(torch.rand(2, 3, 32, 32))
    weights = (10, 10, 0, 0, 0)
    full = sum(feature_matching_loss(vgg(pred[k]), vgg(real[k]), weights) for k in pred)  # all five slices
    calls = []
    vgg.features[7].register_forward_hook(lambda *_: calls.append(1))  # conv2_2, first layer past relu2_1
    assert pyramid_perceptual_loss(vgg, pred, real, weights).item() == pytest.approx(full.item(), rel=1e-6)
    assert calls == []
    assert pyramid_perceptual_loss(vgg, pred, real, (0,) * 5).item() == 0 and calls == []


def test_perceptual_weighting_by_hand():
    a = [torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 1, 1)]
    b = [torch.full((1, 2, 2, 2), 0.5), torch.full((1, 1, 1, 1), 2.0)]
    assert feature_matching_loss(a, b, (10, 1)).item() == pytest.approx(10 * 0.5 + 1 * 2.0)


def test_vgg_keys_follow_torchvision_and_local_weights_load(tmp_path):
    vgg = Vgg19()
    keys = list(vgg.state_dict())
    assert keys[:2] == ["features.0.weight", "features.0.bias"] and keys[-1] == "features.28.bias"
    feats = vgg(torch.rand(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    # a torchvision-style file (with classifier keys) loads; the features then equal its weights
    state = {k: torch.randn_like(v) for k, v in vgg.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "vgg19.pth")
    loaded = Vgg19(tmp_path / "vgg19.pth")
    assert torch.equal(loaded.features[28].bias, state["features.28.bias"])
    with pytest.raises(FileNotFoundError, match="missing.pth: VGG-19 weights not found"):
        Vgg19(tmp_path / "missing.pth")
    # a download cut off: one line naming the file (was torch's own error, with a traceback)
    (tmp_path / "cut.pth").write_bytes((tmp_path / "vgg19.pth").read_bytes()[:4096])
    with pytest.raises(CheckpointError, match=r"cut\.pth: not a readable checkpoint \(truncated or corrupt\?\)"):
        Vgg19(tmp_path / "cut.pth")


def test_equivariance_losses_vanish_for_an_exactly_equivariant_detector():
    torch.manual_seed(1)
    transform = Transform(3, sigma_affine=0.1, sigma_tps=0.05, points_tps=5)

    def detector_on_warped(n: int):  # what the detector returns on the warped frame: any points, any Jacobians
        return torch.rand(3, n, 2) * 1.6 - 0.8, torch.eye(2) + 0.3 * torch.randn(3, n, 2, 2)

    kp_t, jac_t = detector_on_warped(4)
    # an exactly equivariant detector returns T(kp_t) and ∇T(kp_t)·J_t on the unwarped frame
    kp_d = transform.warp_coordinates(kp_t).detach()
    jac_d = torch.matmul(transform.jacobian(kp_t), jac_t).detach()
    assert equivariance_value_loss(kp_d, kp_t, transform).item() < 1e-6
    assert equivariance_jacobian_loss(jac_d, kp_t, jac_t, transform).item() < 1e-5
    # a detector off by 0.1 in x gives value loss 0.05 (mean over x and y)
    assert equivariance_value_loss(kp_d + torch.tensor([0.1, 0.0]), kp_t, transform).item() == pytest.approx(
        0.05, abs=1e-5)


def test_lsgan_and_feature_matching_hand_values():
    d_fake = [torch.full((1, 1, 2, 2), 0.5)]
    d_real = [torch.full((1, 1, 2, 2), 0.75)]
    assert generator_gan_loss(d_fake).item() == pytest.approx(0.25)  # (1 − .5)²
    assert discriminator_gan_loss(d_real, d_fake).item() == pytest.approx(0.0625 + 0.25)  # (1−.75)² + .5²
    real = [torch.ones(1, 2, 2, 2), torch.zeros(1, 1, 1, 1)]
    fake = [torch.zeros(1, 2, 2, 2), torch.full((1, 1, 1, 1), 3.0)]
    assert feature_matching_loss(real, fake, (10, 0)).item() == pytest.approx(10.0)


def test_keypoint_separation_hand_values_and_gradient_pushes_apart():
    sigma = 0.1
    assert keypoint_separation_loss(torch.zeros(2, 5, 2), sigma).item() == pytest.approx(1.0)  # all coincide
    assert keypoint_separation_loss(torch.zeros(2, 1, 2), sigma).item() == 0  # one keypoint: nothing to separate
    # three keypoints on a line, 0.1 apart: pair distances² 0.01, 0.01, 0.04 → exp(−0.5), exp(−0.5), exp(−2)
    kp = torch.tensor([[[0.0, 0.0], [0.1, 0.0], [0.2, 0.0]]], requires_grad=True)
    expected = (2 * math.exp(-0.5) + math.exp(-2.0)) / 3
    loss = keypoint_separation_loss(kp, sigma)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # the batch mean of two such images is the same; a far-apart image adds ~0
    far = torch.tensor([[[-0.9, -0.9], [0.9, 0.9], [0.9, -0.9]]])
    both = keypoint_separation_loss(torch.cat([kp.detach(), far]), sigma).item()
    assert both == pytest.approx(expected / 2, rel=1e-6)
    # a descent step spreads the outer keypoints outward and leaves the middle one in place (symmetry)
    loss.backward()
    assert kp.grad[0, 0, 0] > 0 and kp.grad[0, 2, 0] < 0 and kp.grad[0, 1].abs().max() < 1e-7
    assert kp.grad[..., 1].abs().max() == 0
