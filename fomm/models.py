"""The one place the networks are built from a config (`model_params`): training, animation, evaluation, tools."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fomm.config.model_params import ModelConfig
from fomm.discriminator import MultiScaleDiscriminator
from fomm.generator import OcclusionAwareGenerator
from fomm.keypoint_detector import KPDetector


@dataclass(frozen=True)
class Networks:
    kp_detector: KPDetector
    generator: OcclusionAwareGenerator
    discriminator: MultiScaleDiscriminator | None  # built only when asked for (training, checkpoint checks)


def build_networks(cfg: ModelConfig, *, discriminator: bool = False, seed: int | None = None,
                   device: str | torch.device = "cpu") -> Networks:
    """Keypoint detector, generator and (when asked) discriminator, in that order, on `device`; `seed`: their
    random init from that seed in a forked generator (None: from the caller's stream)."""
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        kp_detector = KPDetector.from_config(cfg).to(device)
        generator = OcclusionAwareGenerator.from_config(cfg).to(device)
        disc = MultiScaleDiscriminator.from_config(cfg).to(device) if discriminator else None
    return Networks(kp_detector, generator, disc)
