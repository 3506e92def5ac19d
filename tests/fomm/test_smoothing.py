"""One-euro filter: a still signal stays still, the lag on a ramp is the hand-computed one, noise is damped."""

import math

import numpy as np
import pytest
import torch

from fomm.animator import Animator
from fomm.smoothing import OneEuroFilter

pytestmark = pytest.mark.numeric


def acceleration(x: torch.Tensor) -> float:
    """Mean |second difference| over time.  x: T×..."""
    return float((x[2:] - 2 * x[1:-1] + x[:-2]).abs().mean())


def test_still_input_stays_exactly_still_and_zero_strength_passes_through():
    still = torch.full((30, 10, 2), 0.25)
    assert torch.equal(OneEuroFilter(4.0).sequence(still), still)
    noisy = torch.randn(30, 10, 2)
    assert torch.equal(OneEuroFilter(0.0).sequence(noisy), noisy)
    with pytest.raises(ValueError, match="≥ 0"):
        OneEuroFilter(-1.0)


def test_lag_on_a_ramp_is_the_hand_computed_one():
    # steady state: speed v → cut-off 1/(2π S) + β v; EMA weight a = 1 / (1 + 1/(2π cut-off)); ramp lag (1 − a) / a
    strength, beta, v = 4.0, 5.0, 0.02
    cutoff = 1 / (2 * math.pi * strength) + beta * v
    a = 1 / (1 + 1 / (2 * math.pi * cutoff))
    expected = (1 - a) / a  # 1.138 frames
    ramp = torch.arange(200, dtype=torch.float64) * v
    out = OneEuroFilter(strength, beta).sequence(ramp)
    lag = float((ramp[-1] - out[-1]) / v)
    assert lag == pytest.approx(expected, rel=1e-3) and lag <= 2.0


def test_step_settles_and_seeded_noise_is_damped_over_3x():
    step = torch.cat([torch.zeros(10), torch.ones(40)])
    out = OneEuroFilter(4.0).sequence(step)
    assert torch.equal(out[:10], step[:10]) and 0.0 < out[10] < 1.0 and abs(float(out[-1]) - 1) < 1e-2
    assert bool((out[10:].diff() >= 0).all())  # no overshoot, no ringing
    gen = torch.Generator().manual_seed(0)
    noise = 0.3 + 0.01 * torch.randn(300, 10, 2, generator=gen)
    smoothed = OneEuroFilter(4.0).sequence(noise)
    assert acceleration(noise) / acceleration(smoothed) >= 3.0


def test_filter_state_carries_across_batches_per_key(tiny_config_path):
    torch.set_num_threads(1)
    frames = np.random.default_rng(1).integers(0, 256, size=(12, 64, 64, 3)).astype(np.uint8)
    kp = {}
    for batch_size in (12, 5):  # one batch; three, the filters' state carried from one to the next
        animator = Animator.from_config(tiny_config_path, random_init=True, seed=0, batch_size=batch_size, smooth=3.0)
        batches = list(animator.animate(frames[0], frames))
        kp[batch_size] = {k: torch.cat([b.kp_driving[k] for b in batches]) for k in ("value", "jacobian")}
    raw = animator.detect(frames)
    for key in ("value", "jacobian"):
        assert torch.allclose(kp[5][key], kp[12][key], atol=1e-6)
        assert torch.allclose(kp[5][key], OneEuroFilter(3.0).sequence(raw[key]), atol=1e-6)


def test_animator_smooth_keeps_a_still_drive_still_and_damps_noise(tiny_config_path):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(64, 64, 3)).astype(np.float64)
    noisy = np.clip(base + rng.normal(0, 12, size=(24, 64, 64, 3)), 0, 255).astype(np.uint8)
    kps = {}
    for strength in (0.0, 4.0):
        animator = Animator.from_config(tiny_config_path, random_init=True, seed=0, batch_size=5, smooth=strength)
        kps[strength] = torch.cat([b.kp_norm["value"] for b in animator.animate(base.astype(np.uint8), noisy)])
        still = torch.cat([b.kp_norm["value"] for b in animator.animate(noisy[0], [noisy[0]] * 6)])
        assert torch.allclose(still, still[:1].expand_as(still), atol=1e-6)
    assert acceleration(kps[4.0]) < acceleration(kps[0.0]) / 2
