"""Parity with numbers made by the original FOMM code (../shared/reference/parity/original-tiny64-adv.pt, see its
README): inference outputs, relative motion, one training step's losses and every gradient. fp32 must stay within
1e-5 (outputs) / 1e-4 relative (losses, gradients); the default precision (bf16 autocast on a CPU with native bf16)
is held to a looser tolerance stated beside each check. These guard every speed change of the model."""

from pathlib import Path

import pytest
import torch

import fomm
from fomm.config import ModelConfig, TrainParams
from fomm.full_model import DiscriminatorFullModel, GeneratorFullModel, total_loss
from fomm.tps import Transform
from fomm.vgg import Vgg19

PARITY = Path(__file__).resolve().parents[3] / "shared" / "reference" / "parity" / "original-tiny64-adv.pt"


@pytest.fixture(scope="module")
def ref() -> dict:
    if not PARITY.is_file():
        pytest.fail(f"parity file missing: {PARITY}")
    return torch.load(PARITY, weights_only=True)


def build(ref: dict) -> tuple[fomm.KPDetector, fomm.OcclusionAwareGenerator, ModelConfig]:
    cfg = ModelConfig.from_dict(ref["model_params"])
    det, gen = fomm.KPDetector.from_config(cfg), fomm.OcclusionAwareGenerator.from_config(cfg)
    det.load_state_dict(ref["kp_detector"])
    gen.load_state_dict(ref["generator"])
    return det.eval(), gen.eval(), cfg


def animator(ref: dict, precision: str, **options) -> fomm.Animator:
    det, gen, _ = build(ref)
    return fomm.Animator(det, gen, frame_size=(64, 64), crop="none", batch_size=4, precision=precision, **options)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def test_fp32_inference_outputs_match_the_original(ref):
    det, gen, _ = build(ref)
    with torch.no_grad():
        kp_s, kp_d = det(ref["source"]), det(ref["driving"])
        kp_s4 = {k: v.expand(4, *v.shape[1:]) for k, v in kp_s.items()}
        out = gen(ref["source"].expand(4, -1, -1, -1), kp_driving=kp_d, kp_source=kp_s4)
    for key in ("value", "jacobian"):
        assert max_diff(kp_s[key], ref["kp_source"][key]) <= 1e-5
        assert max_diff(kp_d[key], ref["kp_driving"][key]) <= 1e-5
    for key, expected in ref["generator_out"].items():
        assert out[key].shape == expected.shape, key
        # `deformed` (the source image warped by the dense motion) turns the deformation's last-bit differences
        # into 1.5e-5 on an Intel Xeon (AMX) with the code before any speed change too (0.0 where the file was
        # made, an AMD EPYC): 2e-5 for it alone
        assert max_diff(out[key], expected) <= (2e-5 if key == "deformed" else 1e-5), key


def test_fp32_animator_relative_motion_matches_the_original(ref):
    """The inference path (source prepared once, only the prediction computed, movement scale once)."""
    anim = animator(ref, "fp32", adapt_movement_scale=True, use_relative_jacobian=True)
    (batch,) = list(anim.animate(ref["source"], list(ref["driving"])))
    rel = ref["relative"]
    assert max_diff(batch.kp_norm["value"], rel["value"]) <= 1e-5
    assert max_diff(batch.kp_norm["jacobian"], rel["jacobian"]) <= 1e-5
    assert max_diff(batch.prediction, rel["prediction"]) <= 1e-5


def test_inference_shortcut_equals_the_full_forward_on_what_it_keeps(ref):
    det, gen, _ = build(ref)
    with torch.no_grad():
        kp_s, kp_d = det(ref["source"]), det(ref["driving"])
        kp_s4 = {k: v.expand(4, *v.shape[1:]) for k, v in kp_s.items()}
        full = gen(ref["source"].expand(4, -1, -1, -1), kp_driving=kp_d, kp_source=kp_s4)
        prepared = gen.prepare_source(ref["source"], kp_s)  # 1 source, shared by the 4 frames
        short = gen(None, kp_driving=kp_d, kp_source=kp_s4, source=prepared, outputs="prediction")
    assert set(short) == {"prediction", "occlusion_map"}
    assert {"deformed", "sparse_deformed", "mask", "deformation"} <= set(full)
    for key in short:
        assert torch.equal(short[key], full[key]), key
    with pytest.raises(ValueError, match="outputs must be 'all' or 'prediction'"):
        gen(None, kp_driving=kp_d, kp_source=kp_s4, source=prepared, outputs="some")


def test_bf16_and_channels_last_inference_stay_close_to_the_original(ref):
    """bf16 autocast (8-bit mantissa): predictions within 0.02 of the original, mean 0.003, keypoints within 0.02
    (measured: 0.005, 0.001, 0.012); channels_last in fp32 only reorders memory: within 1e-5."""
    rel = ref["relative"]
    bf16 = animator(ref, "bf16", adapt_movement_scale=True, use_relative_jacobian=True)
    (batch,) = list(bf16.animate(ref["source"], list(ref["driving"])))
    assert batch.prediction.dtype == torch.float32
    err = (batch.prediction - rel["prediction"]).abs()
    assert float(err.max()) <= 0.02 and float(err.mean()) <= 0.003
    assert max_diff(batch.kp_norm["value"], rel["value"]) <= 0.02
    cl = animator(ref, "fp32", adapt_movement_scale=True, use_relative_jacobian=True, channels_last=True)
    (batch,) = list(cl.animate(ref["source"], list(ref["driving"])))
    assert max_diff(batch.prediction, rel["prediction"]) <= 1e-5


def test_fp32_training_step_losses_and_gradients_match_the_original(ref, monkeypatch):
    det, gen, cfg = build(ref)
    disc = fomm.MultiScaleDiscriminator.from_config(cfg)
    disc.load_state_dict(ref["discriminator"])
    tp = TrainParams.from_dict(ref["train_params"])
    vgg = Vgg19()
    vgg.features[0].load_state_dict({k[len("features.0."):]: v for k, v in ref["vgg19_relu1_1"].items()
                                     if k.startswith("features.0.")})
    vgg.features[2].load_state_dict({k[len("features.2."):]: v for k, v in ref["vgg19_relu1_1"].items()
                                     if k.startswith("features.2.")})
    warp = ref["warp"]
    assert torch.equal(warp["control_points"].view(1, -1, 2), Transform.identity(2).control_points)
    monkeypatch.setattr("fomm.full_model.Transform", lambda bs, *_: Transform(
        bs, 0.0, points_tps=5, theta=warp["theta"], control_params=warp["control_params"]))  # the step's warp
    for m in (det, gen, disc):
        m.train()
    generator_full = GeneratorFullModel(det, gen, disc, tp, vgg=vgg)
    losses, generated = generator_full(dict(ref["train_batch"]))
    total_loss(losses).backward()
    for key, expected in ref["train_losses"].items():
        assert abs(float(losses[key].detach().mean()) - expected) <= 1e-4 * abs(expected), key
    disc.zero_grad(set_to_none=True)  # the discriminator's gradients come from its own loss alone
    disc_loss = total_loss(DiscriminatorFullModel(disc, tp)(dict(ref["train_batch"]), generated))
    disc_loss.backward()
    assert abs(float(disc_loss.detach()) - ref["disc_loss"]) <= 1e-4 * abs(ref["disc_loss"])
    for name, module in (("generator", gen), ("kp_detector", det), ("discriminator", disc)):
        expected = ref["grads"][name]
        params = dict(module.named_parameters())
        assert set(expected) <= set(params), name
        # relative to the module's largest gradient: some biases have zero gradient in exact arithmetic (README)
        scale = max(float(g.abs().max()) for g in expected.values())
        worst = max(max_diff(params[k].grad, g) for k, g in expected.items())
        assert worst <= 1e-4 * scale, f"{name}: gradient off by {worst:.3g} (largest {scale:.3g})"


def test_folded_batch_norm_computes_the_same_and_saves_a_plain_checkpoint(ref):
    from fomm.inference import FoldedBatchNorm2d, fold_batch_norm

    det, gen, cfg = build(ref)
    with torch.no_grad():
        kp = det(ref["source"])
        before = gen(ref["source"], kp_driving=kp, kp_source=kp)["prediction"]
        fold_batch_norm(det), fold_batch_norm(gen)
        folded = [m for m in gen.modules() if isinstance(m, FoldedBatchNorm2d)]
        # every conv → norm pair: 2 down, 2 up, first, hourglass 3 + 3, and the second norm of 2 res blocks
        assert len(folded) == 13
        assert max_diff(gen(ref["source"], kp_driving=kp, kp_source=kp)["prediction"], before) <= 1e-5
        plain = fomm.OcclusionAwareGenerator.from_config(cfg).eval()
        plain.load_state_dict(gen.state_dict())  # the same keys: a checkpoint any model loads
        assert max_diff(plain(ref["source"], kp_driving=kp, kp_source=kp)["prediction"], before) <= 1e-5
    with pytest.raises(RuntimeError, match="inference only"):
        gen.train()(ref["source"], kp_driving=kp, kp_source=kp)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norm(plain.train())
