"""CPU training steps: a tiny model overfits one pair; the tiny-64 loss curve matches its recorded curve.

The recorded curve (tests/assets/losses/tiny-64.txt) is our own output, not the original code's: a regression
guard that shows when a change moves the losses or the update, not evidence of parity with the paper's code. It is
recorded and checked in float64, whose results agree across CPUs (float32's last bits depend on the CPU's vector
kernels, and Adam amplifies them step by step).
"""

import dataclasses
from pathlib import Path

import pytest
import torch

import fomm.config
import fomm.losses
import fomm.train_step
import fomm.vgg
from fomm.config.schema import LossWeights, load_config
from fomm.losses import keypoint_separation_loss
from fomm.train_step import build_train_state, end_epoch, to_channels_last, train_step

GOLDEN = Path(__file__).resolve().parents[1] / "assets" / "losses" / "tiny-64.txt"


def smooth_pair() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    img = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=(64, 64), mode="bilinear",
                                          align_corners=False)
    return {"source": img, "driving": torch.roll(img, shifts=(4, 6), dims=(2, 3))}


def test_tiny_model_overfits_one_pair(tiny_config_path):
    cfg = load_config(tiny_config_path)
    tp = dataclasses.replace(cfg.train_params, lr_generator=2e-3, lr_kp_detector=2e-3, scales=(1,),
                             loss_weights=LossWeights(perceptual=(1, 1, 1, 1, 1), equivariance_value=0,
                                                      equivariance_jacobian=0))
    torch.manual_seed(0)
    state = build_train_state(cfg.model_params, tp)
    batch = smooth_pair()
    history = [train_step(state, batch)[0]["perceptual"] for _ in range(100)]
    assert all(torch.isfinite(torch.tensor(history)))
    assert history[-1] < history[0] / 4, f"loss fell only from {history[0]:.4f} to {history[-1]:.4f}"


def golden_run(cfg) -> list[float]:
    """Four float64 steps of tiny-64 (fused Adam) on a fixed random batch; the seeded random VGG-19, so that
    ImageNet weights found on a machine do not change the curve."""
    torch.manual_seed(0)
    state = build_train_state(cfg.model_params, cfg.train_params, vgg=fomm.vgg.Vgg19(), dtype=torch.float64)
    torch.manual_seed(1)
    batch = {k: torch.rand(2, 3, 64, 64, dtype=torch.float64) for k in ("source", "driving")}
    return [train_step(state, batch)[0]["total"] for _ in range(4)]


@pytest.mark.numeric  # the module's other tests are minutes under an ISA cap and compare no close numbers
def test_tiny64_golden_loss_curve(tiny_config_path):
    """Regression guard recorded from our own output: four float64 steps of tiny-64 give the recorded losses."""
    cfg = load_config(tiny_config_path)
    losses = golden_run(cfg)
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} missing: record it with `python tests/fomm/test_training_step.py`")
    expected = [float(x) for x in GOLDEN.read_text().split()]
    # 1e-9 relative on every step: measured 0.0 (bit-identical) under the default ISA (AVX-512),
    # ONEDNN_MAX_CPU_ISA=AVX2 and =SSE41, 1 and 2 threads; a changed loss or update rule moves it by far more
    for step, (got, want) in enumerate(zip(losses, expected, strict=True), start=1):
        assert got == pytest.approx(want, rel=1e-9, abs=0), f"step {step}: {got!r} against the golden {want!r}"


@pytest.mark.numeric
def test_channels_last_step_with_fused_adam_matches_the_contiguous_one(tiny_config_path):
    """to_channels_last reaches every conv network (the perceptual VGG too); the step computes the same (fp32):
    two steps' losses within 1e-4 relative, measured 1.2e-5 / 1.0e-5 / 3.1e-6 (default ISA / ONEDNN_MAX_CPU_ISA=AVX2
    / =SSE41)."""
    cfg = load_config(tiny_config_path)
    batch = smooth_pair()
    runs = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        state = build_train_state(cfg.model_params, cfg.train_params, vgg=fomm.vgg.Vgg19())
        assert all(opt.defaults["fused"] for opt in state.optimizers.values())
        if channels_last:
            to_channels_last(state)
            convs = [m for net in (state.kp_detector, state.generator, state.generator_full.vgg)
                     for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
            assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
            batch = {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}
        runs.append([train_step(state, batch)[0]["total"] for _ in range(2)])
    assert runs[1] == pytest.approx(runs[0], rel=1e-4)


def test_keypoint_separation_term_is_weighted_and_absent_by_default(tiny_config_path):
    cfg = load_config(tiny_config_path)
    assert cfg.train_params.loss_weights.keypoint_separation == 0  # original configs: the paper's losses only
    torch.manual_seed(0)
    state = build_train_state(cfg.model_params, cfg.train_params)
    batch = smooth_pair()
    losses, generated = state.generator_full(batch)
    assert "keypoint_separation" not in losses
    weights = dataclasses.replace(cfg.train_params.loss_weights, keypoint_separation=4.0, keypoint_separation_sigma=0.2)
    state.generator_full.weights = weights
    losses, generated = state.generator_full(batch)
    expected = 4.0 * 0.5 * sum(keypoint_separation_loss(generated[k]["value"], 0.2) for k in ("kp_source", "kp_driving"))
    assert losses["keypoint_separation"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_learning_rate_schedule_and_adversarial_step(tiny_config_path):
    cfg = load_config(tiny_config_path)
    weights = dataclasses.replace(cfg.train_params.loss_weights, generator_gan=1)
    tp = dataclasses.replace(cfg.train_params, loss_weights=weights, scales=(1,), epoch_milestones=(1, 2))
    state = build_train_state(cfg.model_params, tp)
    before = [p.clone() for p in state.discriminator.parameters()]
    values, _ = train_step(state, {"source": torch.rand(2, 3, 64, 64), "driving": torch.rand(2, 3, 64, 64)})
    assert {"gen_gan", "feature_matching", "disc_gan"} <= set(values)
    assert any(not torch.equal(a, b) for a, b in zip(before, state.discriminator.parameters()))
    assert state.learning_rates()["lr_generator"] == pytest.approx(2e-4)
    end_epoch(state)
    assert state.learning_rates()["lr_generator"] == pytest.approx(2e-5)
    end_epoch(state)
    assert state.learning_rates()["lr_kp_detector"] == pytest.approx(2e-6) and state.epoch == 2


def test_state_save_load_restores_epoch_and_optimizer(tmp_path, tiny_config_path):
    cfg = load_config(tiny_config_path)
    tp = dataclasses.replace(cfg.train_params, scales=(1,), epoch_milestones=(1,))
    state = build_train_state(cfg.model_params, tp)
    train_step(state, {"source": torch.rand(1, 3, 64, 64), "driving": torch.rand(1, 3, 64, 64)})
    end_epoch(state)
    path = tmp_path / "00000001-checkpoint.pth.tar"
    path.write_bytes(state.to_bytes())
    fresh = build_train_state(cfg.model_params, tp)
    fresh.load(path)
    assert fresh.epoch == 1 and fresh.step == 1
    assert fresh.learning_rates() == state.learning_rates()
    a = state.optimizers["generator"].state_dict()["state"][0]["exp_avg"]
    assert torch.equal(fresh.optimizers["generator"].state_dict()["state"][0]["exp_avg"], a)


def test_frozen_batch_norm_keeps_its_statistics_trains_its_weights_and_makes_training_mode_match_eval(
        tiny_config_path):
    cfg = load_config(tiny_config_path)
    tp = dataclasses.replace(cfg.train_params, scales=(1,))
    torch.manual_seed(0)
    state = build_train_state(cfg.model_params, tp)
    batch = smooth_pair()
    train_step(state, batch)  # one ordinary step: statistics move
    norms = [m for m in state.generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
    weights = [m.weight.detach().clone() for m in norms]
    state.batch_norm_frozen = True
    state.generator.train(), state.kp_detector.train()  # as validation leaves them
    train_step(state, batch)
    assert all(torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
               for m, (mean, var) in zip(norms, stats))
    assert any(not torch.equal(m.weight, w) for m, w in zip(norms, weights))  # the affine weights still learn
    assert not any(m.training for m in norms) and state.generator.training  # only the norms switched

    kp = state.kp_detector(batch["source"])
    with torch.no_grad():  # frozen: a forward in training mode is the eval-mode forward
        frozen = state.generator(batch["source"], kp_source=kp, kp_driving=kp)["prediction"]
        state.generator.eval()
        evaluated = state.generator(batch["source"], kp_source=kp, kp_driving=kp)["prediction"]
    assert torch.equal(frozen, evaluated)


if __name__ == "__main__":  # re-record the regression guard (only after a deliberate change of the losses)
    root = Path(__file__).resolve().parents[2]
    curve = golden_run(load_config(root / "configs" / "tiny-64.yaml"))
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text("\n".join(repr(x) for x in curve) + "\n")
    print(curve)
