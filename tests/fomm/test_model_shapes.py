"""The config's shape rules (fomm.config.schema) against the networks themselves: what the rules accept runs a
forward pass, and each rule refuses exactly what would fail inside torch."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from fomm.blocks import ImagePyramid
from fomm.config.loader import ConfigError, build, read_yaml
from fomm.config.model_params import discriminator_fits
from fomm.config.schema import FommConfig
from fomm.discriminator import Discriminator
from fomm.keypoint_detector import KPDetector
from fomm.models import build_networks
from fomm.vgg import Vgg19


@pytest.mark.parametrize("num_blocks", [1, 2, 3, 4, 5])
def test_discriminator_fits_is_what_the_discriminator_takes_in_training(num_blocks):
    disc = Discriminator(block_expansion=2, max_features=4, num_blocks=num_blocks, num_kp=1).train()
    for h in range(1, 48):
        for w in (1, 2, 3, 4, 5, 7, 8, 11, h):
            try:
                disc(torch.rand(1, 3, h, w))
                runs = True
            except (RuntimeError, ValueError):  # a kernel larger than its input; instance norm of one pixel
                runs = False
            assert discriminator_fits((h, w), num_blocks) == runs, (h, w)


@pytest.mark.parametrize("pad", [0, 1, 3])
def test_the_keypoint_head_needs_side_plus_twice_pad_of_seven(pad):
    for side in (2, 4, 6, 8, 10):  # even: one hourglass block halves and doubles the side
        kp = KPDetector(block_expansion=2, num_kp=2, num_channels=3, max_features=8, num_blocks=1, temperature=0.1,
                        scale_factor=1, pad=pad)
        try:
            kp(torch.rand(1, 3, side, side))
            runs = True
        except RuntimeError:
            runs = False
        assert runs == (side + 2 * pad >= 7), (side, pad)


def test_the_perceptual_loss_up_to_relu_n_needs_two_to_the_n_minus_one_pixels():
    vgg = Vgg19()
    for used in range(1, 6):
        need = 2 ** (used - 1)
        for side in sorted({1, need - 1, need, need + 1} - {0}):  # either side of the bound
            try:
                vgg(torch.rand(1, 3, side, side + 3), num_slices=used)
                runs = True
            except RuntimeError:  # a 2×2 max pool of one pixel
                runs = False
            assert runs == (side >= need), (used, side)


def test_a_block_expansion_above_max_features_does_not_run():
    kp = KPDetector(block_expansion=16, num_kp=2, num_channels=3, max_features=8, num_blocks=2, temperature=0.1)
    with pytest.raises(RuntimeError, match="channels"):
        kp(torch.rand(1, 3, 32, 32))


def _random_config(rng: random.Random, base: dict) -> dict:
    d = copy.deepcopy(base)
    mp, tp = d["model_params"], d["train_params"]
    gp = mp["generator_params"]
    mp["common_params"].update(num_kp=rng.choice([1, 3]), estimate_jacobian=rng.choice([True, False]))
    for p in (mp["kp_detector_params"], gp["dense_motion_params"], gp, mp["discriminator_params"]):
        p.update(block_expansion=rng.choice([2, 4, 8]), max_features=rng.choice([2, 4, 16]))
    for p in (mp["kp_detector_params"], gp["dense_motion_params"]):
        p.update(num_blocks=rng.choice([1, 2, 3]), scale_factor=rng.choice([1, 0.5, 0.25]))
    mp["kp_detector_params"]["pad"] = rng.choice([0, 1, 3])
    gp.update(num_down_blocks=rng.choice([0, 1, 2]), num_bottleneck_blocks=rng.choice([0, 1]))
    mp["discriminator_params"].update(scales=rng.choice([[1], [0.5], [1, 0.5]]), num_blocks=rng.choice([1, 3, 4]))
    tp["loss_weights"]["generator_gan"] = rng.choice([0, 1])
    tp["loss_weights"]["perceptual"] = rng.choice([[10, 10, 0, 0, 0], [10, 10, 10, 10, 10]])
    tp["scales"] = rng.choice([[1], [1, 0.5]])
    d["dataset_params"]["frame_shape"] = rng.choice([[16, 16, 3], [32, 24, 3], [32, 32, 3], [48, 64, 3]])
    crop = rng.choice([None, None, [8, 8], [16, 16], [24, 32]])  # the original's RandomCrop: trained at its size
    d["dataset_params"].setdefault("augmentation_params", {})["crop_param"] = crop and {"size": crop}
    return d


def test_every_model_config_the_schema_accepts_runs_a_forward_pass(tiny_config_path):
    """Random small configs (seeded; some with the original's RandomCrop, whose window the networks train on): each
    is refused with a ConfigError (at load, or as a training config) or its networks run, and the discriminator and
    VGG-19 on the training pyramid. Before the rules, 1 in 4 of these failed inside torch."""
    base, rng, accepted, vgg = read_yaml(tiny_config_path), random.Random(7), 0, Vgg19()
    for _ in range(300):
        try:
            cfg = build(FommConfig, _random_config(rng, base), "random:")
            cfg.check_trainable("random:")
        except ConfigError:
            continue
        accepted += 1
        nets = build_networks(cfg.model_params, discriminator=True, seed=0)
        crop = cfg.dataset_params.augmentation_params.crop_param
        with torch.no_grad():
            for h, w in {tuple(cfg.dataset_params.shape[:2]), *([tuple(crop.size)] if crop else [])}:
                frame = torch.rand(1, 3, h, w)  # the frames animated, and the frames trained on last
                kp = nets.kp_detector(frame)
                assert nets.generator(frame, kp, kp)["prediction"].shape == frame.shape
            if crop:
                frame = torch.rand(1, 3, *crop.size)
                kp = nets.kp_detector(frame)
            pyramid = ImagePyramid(cfg.train_params.scales, 3)(frame)
            if cfg.train_params.loss_weights.generator_gan:
                nets.discriminator.train()(pyramid, kp)
            used = max(i + 1 for i, weight in enumerate(cfg.train_params.loss_weights.perceptual) if weight)
            vgg(min(pyramid.values(), key=lambda p: p.shape[-1] * p.shape[-2]), num_slices=used)  # the smallest
    assert accepted >= 20  # the draw exercises the accepted side too
