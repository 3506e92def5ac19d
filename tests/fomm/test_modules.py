"""Module shapes on tiny-64 plus one invariant each, and gradient flow through the full model."""

import dataclasses

import pytest
import torch

from fomm.blocks import ImagePyramid
from fomm.config.schema import LossWeights, load_config
from fomm.discriminator import MultiScaleDiscriminator
from fomm.generator import OcclusionAwareGenerator
from fomm.keypoint_detector import KPDetector
from fomm.losses import DiscriminatorFullModel, GeneratorFullModel, total_loss

pytestmark = pytest.mark.numeric


@pytest.fixture(scope="module")
def cfg(tiny_config_path):
    return load_config(tiny_config_path)


def test_kp_detector_outputs_and_identity_jacobian_init(cfg):
    kp_detector = KPDetector.from_config(cfg.model_params)
    out = kp_detector(torch.rand(3, 3, 64, 64))
    assert out["value"].shape == (3, 5, 2)
    assert out["jacobian"].shape == (3, 5, 2, 2)
    assert out["value"].abs().max() <= 1
    # zero weights, bias (1, 0, 0, 1), heatmaps summing to 1 → every Jacobian is exactly the identity
    assert torch.allclose(out["jacobian"], torch.eye(2).expand(3, 5, 2, 2), atol=1e-5)


def test_single_jacobian_map_and_zeroth_order_variant(cfg):
    common = dataclasses.replace(cfg.model_params.common_params, estimate_jacobian=False)
    zeroth = KPDetector.from_config(dataclasses.replace(cfg.model_params, common_params=common))
    assert "jacobian" not in zeroth(torch.rand(1, 3, 64, 64))
    kp_params = dataclasses.replace(cfg.model_params.kp_detector_params, single_jacobian_map=True)
    single = KPDetector.from_config(dataclasses.replace(cfg.model_params, kp_detector_params=kp_params))
    assert single.jacobian.weight.shape[0] == 4
    assert single(torch.rand(1, 3, 64, 64))["jacobian"].shape == (1, 5, 2, 2)


def test_generator_output_dict(cfg):
    gen = OcclusionAwareGenerator.from_config(cfg.model_params)
    kp = KPDetector.from_config(cfg.model_params)
    src, drv = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    out = gen(src, kp_source=kp(src), kp_driving=kp(drv))
    assert out["prediction"].shape == (2, 3, 64, 64)
    assert out["deformed"].shape == (2, 3, 64, 64)
    assert out["mask"].shape == (2, 6, 32, 32)
    assert torch.allclose(out["mask"].sum(1), torch.ones(2, 32, 32), atol=1e-5)  # softmax over K+1
    assert out["sparse_deformed"].shape == (2, 6, 3, 32, 32)
    assert out["occlusion_map"].shape == (2, 1, 32, 32)
    assert 0 <= out["prediction"].min() and out["prediction"].max() <= 1


def test_generator_with_cached_source_features_matches(cfg):
    gen = OcclusionAwareGenerator.from_config(cfg.model_params).eval()
    kp = KPDetector.from_config(cfg.model_params).eval()
    src, drv = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = gen(src, kp_source=kp(src), kp_driving=kp(drv))["prediction"]
        b = gen(src, kp_source=kp(src), kp_driving=kp(drv), source_features=gen.encode(src))["prediction"]
    assert torch.equal(a, b)


def test_no_occlusion_variant(cfg):
    gp = dataclasses.replace(cfg.model_params.generator_params, estimate_occlusion_map=False)
    gen = OcclusionAwareGenerator.from_config(dataclasses.replace(cfg.model_params, generator_params=gp))
    kp = {"value": torch.zeros(1, 5, 2), "jacobian": torch.eye(2).expand(1, 5, 2, 2)}
    out = gen(torch.rand(1, 3, 64, 64), kp_source=kp, kp_driving=kp)
    assert "occlusion_map" not in out and gen.dense_motion_network.occlusion is None


def test_discriminator_multiscale_and_keypoints(cfg):
    dp = dataclasses.replace(cfg.model_params.discriminator_params, scales=(1, 0.5), use_kp=True)
    disc = MultiScaleDiscriminator.from_config(dataclasses.replace(cfg.model_params, discriminator_params=dp))
    assert sorted(disc.discs.keys()) == ["0-5", "1"]
    pyr = ImagePyramid((1, 0.5), 3)(torch.rand(2, 3, 128, 128))  # 4 unpadded 4×4 convs need ≥ 64 px
    out = disc(pyr, kp={"value": torch.zeros(2, 5, 2)})
    assert len(out["feature_maps_1"]) == 4
    assert out["prediction_map_1"].shape[:2] == (2, 1)
    assert out["prediction_map_0.5"].shape[:2] == (2, 1)


def test_gradients_reach_every_trainable_parameter(cfg):
    weights = LossWeights(generator_gan=1, discriminator_gan=1, feature_matching=(10, 10, 10, 10),
                          perceptual=(1, 1, 1, 1, 1), equivariance_value=10, equivariance_jacobian=10)
    tp = dataclasses.replace(cfg.train_params, loss_weights=weights, scales=(1, 0.5))
    kp = KPDetector.from_config(cfg.model_params)
    gen = OcclusionAwareGenerator.from_config(cfg.model_params)
    disc = MultiScaleDiscriminator.from_config(cfg.model_params)
    full = GeneratorFullModel(kp, gen, disc, tp)
    batch = {"source": torch.rand(2, 3, 64, 64), "driving": torch.rand(2, 3, 64, 64)}
    losses, generated = full(batch)
    assert set(losses) == {"perceptual", "gen_gan", "feature_matching", "equivariance_value",
                           "equivariance_jacobian"}
    total_loss(losses).backward()
    for name, module in (("kp_detector", kp), ("generator", gen)):
        for pname, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"
    disc.zero_grad()
    disc_loss = DiscriminatorFullModel(disc, tp)(batch, generated)["disc_gan"]
    disc_loss.backward()
    for pname, p in disc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"discriminator.{pname} got no gradient"
