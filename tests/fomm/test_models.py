"""The one model builder: a seeded init is reproducible and leaves the caller's random stream alone."""

from __future__ import annotations

import torch

from fomm.config.schema import load_config
from fomm.models import build_networks


def test_seeded_build_is_reproducible_and_keeps_the_callers_stream(tiny_config_path):
    model_params = load_config(tiny_config_path).model_params
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_networks(model_params, seed=5)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream did not move
    b = build_networks(model_params, seed=5, discriminator=True)
    for x, y in zip(a.generator.state_dict().values(), b.generator.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert a.discriminator is None and b.discriminator is not None
    c = build_networks(model_params, seed=6)
    assert not torch.equal(c.kp_detector.kp.weight, a.kp_detector.kp.weight)
