"""Parity with numbers made by the original FOMM code (../shared/reference/parity/, see its README): inference
outputs, relative motion, one training step's losses and every gradient, in float64 against the float64 file.

float64 results agree across CPUs (oneDNN's AVX-512, AVX2 and SSE4.1 kernels give the same figures to the last
bit here), so the tolerances sit near float64 rounding and hold on any CPU; each states the worst difference
measured (identical under ONEDNN_MAX_CPU_ISA=SSE41, =AVX2 and the default on an AVX-512 AMD EPYC). float32 is
checked as a smoke test against the float32 file, with bounds measured under the three ISA caps; bf16 with bounds
that hold with native and with emulated bf16. These guard every speed change of the model."""

from pathlib import Path

import pytest
import torch

from fomm.animator import AnimatedBatch, Animator
from fomm.config.model_params import ModelConfig
from fomm.config.schema import TrainParams
from fomm.discriminator import MultiScaleDiscriminator
from fomm.generator import OcclusionAwareGenerator
from fomm.geometry import Transform
from fomm.keypoint_detector import KPDetector
from fomm.losses import DiscriminatorFullModel, GeneratorFullModel, total_loss
from fomm.precision import native_bf16
from fomm.vgg import Vgg19

pytestmark = pytest.mark.numeric

PARITY_DIR = Path(__file__).resolve().parents[3] / "shared" / "reference" / "parity"
PARITY = PARITY_DIR / "original-tiny64-adv-f64.pt"
PARITY_FP32 = PARITY_DIR / "original-tiny64-adv.pt"


def load(path: Path) -> dict:
    if not path.is_file():
        pytest.fail(f"parity file missing: {path}")
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def ref() -> dict:
    return load(PARITY)


@pytest.fixture(scope="module")
def ref32() -> dict:
    return load(PARITY_FP32)


# float64 parity runs on every device this machine has: the CPU always, a CUDA GPU where there is one
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def on(device: str, tree):
    """Every tensor of a nested dict/list/tuple moved to `device`."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: on(device, v) for k, v in tree.items()}
    return type(tree)(on(device, v) for v in tree) if isinstance(tree, (list, tuple)) else tree


def build(ref: dict, device: str = "cpu") -> tuple[KPDetector, OcclusionAwareGenerator, ModelConfig]:
    """The original's detector and generator in eval mode, in the file's dtype, on `device`."""
    cfg = ModelConfig.from_dict(ref["model_params"])
    dtype = ref["source"].dtype
    det = KPDetector.from_config(cfg).to(device, dtype)
    gen = OcclusionAwareGenerator.from_config(cfg).to(device, dtype)
    det.load_state_dict(ref["kp_detector"])
    gen.load_state_dict(ref["generator"])
    return det.eval(), gen.eval(), cfg


def animator(ref: dict, precision: str, device: str = "cpu", **options) -> Animator:
    det, gen, _ = build(ref, device)
    return Animator(det, gen, frame_size=(64, 64), crop="none", batch_size=4, precision=precision, device=device,
                    adapt_movement_scale=True, use_relative_jacobian=True, **options)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double().cpu() - b.double().cpu()).abs().max())


def inference(ref: dict, device: str = "cpu") -> tuple[dict, dict, dict]:
    """Keypoints of source and driving frames, and the generator's outputs for absolute motion."""
    det, gen, _ = build(ref, device)
    ref = on(device, {k: ref[k] for k in ("source", "driving")})
    with torch.no_grad():
        kp_s, kp_d = det(ref["source"]), det(ref["driving"])
        kp_s4 = {k: v.expand(4, *v.shape[1:]) for k, v in kp_s.items()}
        out = gen(ref["source"].expand(4, -1, -1, -1), kp_driving=kp_d, kp_source=kp_s4)
    return kp_s, kp_d, out


def relative(ref: dict, precision: str, device: str = "cpu", **options) -> AnimatedBatch:
    (batch,) = list(animator(ref, precision, device, **options).animate(ref["source"], list(ref["driving"])))
    return batch


def training_step(ref: dict, monkeypatch, device: str = "cpu") -> dict[str, object]:
    """One step of the original's recipe in train mode: each loss term, the discriminator's loss, every gradient."""
    det, gen, cfg = build(ref, device)
    dtype = ref["source"].dtype
    disc = MultiScaleDiscriminator.from_config(cfg).to(device, dtype)
    disc.load_state_dict(ref["discriminator"])
    tp = TrainParams.from_dict(ref["train_params"])
    vgg = Vgg19().to(device, dtype)
    for i in (0, 2):
        vgg.features[i].load_state_dict({k[len(f"features.{i}."):]: v for k, v in ref["vgg19_relu1_1"].items()
                                         if k.startswith(f"features.{i}.")})
    warp, batch = on(device, ref["warp"]), on(device, dict(ref["train_batch"]))
    assert torch.equal(warp["control_points"].view(1, -1, 2).to(dtype),
                       Transform(2, 0.0, 0.0, points_tps=5).control_points.to(device, dtype))
    monkeypatch.setattr("fomm.losses.Transform", lambda bs, *_: Transform(
        bs, 0.0, points_tps=5, theta=warp["theta"], control_params=warp["control_params"]))  # the step's warp
    for m in (det, gen, disc):
        m.train()
    losses, generated = GeneratorFullModel(det, gen, disc, tp, vgg=vgg).to(device)(dict(batch))
    total_loss(losses).backward()
    disc.zero_grad(set_to_none=True)  # the discriminator's gradients come from its own loss alone
    disc_loss = total_loss(DiscriminatorFullModel(disc, tp).to(device)(dict(batch), generated))
    disc_loss.backward()
    return {"losses": {k: float(v.detach().mean()) for k, v in losses.items()}, "disc_loss": float(disc_loss.detach()),
            "modules": {"generator": gen, "kp_detector": det, "discriminator": disc}}


def worst_gradient(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(worst absolute difference, the module's largest expected gradient): some biases have zero gradient in
    exact arithmetic (README), so differences are judged against the module's largest."""
    params = dict(module.named_parameters())
    assert set(expected) <= set(params)
    scale = max(float(g.abs().max()) for g in expected.values())
    return max(max_diff(params[k].grad, g) for k, g in expected.items()), scale


@pytest.mark.parametrize("device", DEVICES)
def test_inference_outputs_match_the_original_in_float64(ref, device):
    kp_s, kp_d, out = inference(ref, device)
    assert out["prediction"].dtype == torch.float64
    # 1e-10: measured ≤ 8.9e-16 for keypoints and Jacobians, ≤ 5.0e-14 for the outputs (`deformed`, the source
    # warped by the dense motion, the worst), the same under every ISA cap; 16-thread Intel Xeon (AMX): 4.3e-14;
    # H200 (CUDA 13): 4.7e-16 and 6.4e-14
    for key in ("value", "jacobian"):
        assert max_diff(kp_s[key], ref["kp_source"][key]) <= 1e-10
        assert max_diff(kp_d[key], ref["kp_driving"][key]) <= 1e-10
    for key, expected in ref["generator_out"].items():
        assert out[key].shape == expected.shape, key
        assert max_diff(out[key], expected) <= 1e-10, key


@pytest.mark.parametrize("device", DEVICES)
def test_animator_relative_motion_matches_the_original_in_float64(ref, device):
    """The inference path (batch norm folded, source prepared once, only the prediction, movement scale once)."""
    batch = relative(ref, "fp32", device)
    rel = ref["relative"]
    assert batch.prediction.dtype == torch.float64  # the Animator follows its modules' dtype
    # 1e-10: measured 2.0e-15 (value), 1.4e-15 (Jacobian), 9.4e-16 (prediction) under every ISA cap; the worst
    # of the three 1.3e-15 on a 16-thread Intel Xeon, 1.1e-15 on an H200
    for key in ("value", "jacobian"):
        assert max_diff(batch.kp_norm[key], rel[key]) <= 1e-10, key
    assert max_diff(batch.prediction, rel["prediction"]) <= 1e-10


@pytest.mark.parametrize("device", DEVICES)
def test_training_step_losses_and_gradients_match_the_original_in_float64(ref, monkeypatch, device):
    step = training_step(ref, monkeypatch, device)
    # losses within 1e-10 relative: measured ≤ 6.8e-15 (gen_gan) under every ISA cap, 5.3e-14 on a 16-thread
    # Intel Xeon, 5.4e-13 on an H200
    for key, expected in ref["train_losses"].items():
        assert step["losses"][key] == pytest.approx(expected, rel=1e-10, abs=0), key
    assert step["disc_loss"] == pytest.approx(ref["disc_loss"], rel=1e-10, abs=0)  # measured 9.1e-16
    # gradients within 1e-8 of the module's largest: measured 9.0e-13 (generator), 1.7e-12 (kp detector),
    # 4.1e-13 (discriminator) under every ISA cap, 1 and 2 threads; ≤ 3.9e-11 on a 16-thread Intel Xeon, ≤ 1.3e-11
    # on an H200 (CUDA 13)
    for name, module in step["modules"].items():
        worst, scale = worst_gradient(module, ref["grads"][name])
        assert worst <= 1e-8 * scale, f"{name}: gradient off by {worst:.3g} (largest {scale:.3g})"


def test_fp32_smoke_inference_and_training_step_near_the_original(ref32, monkeypatch):
    """float32 against the float32 file (made on an AVX-512 CPU): a smoke test with bounds from measurements of
    the worst difference under the default ISA (AVX-512), ONEDNN_MAX_CPU_ISA=AVX2 and =SSE41."""
    kp_s, kp_d, out = inference(ref32)
    # keypoints and Jacobians: 0 / 3.3e-7 / 3.3e-7; bound 5e-6
    for key in ("value", "jacobian"):
        assert max_diff(kp_s[key], ref32["kp_source"][key]) <= 5e-6
        assert max_diff(kp_d[key], ref32["kp_driving"][key]) <= 5e-6
    # outputs: 0 / 2.5e-5 / 2.1e-5 (`deformed`; the others ≤ 7.6e-6); bound 1e-4
    for key, expected in ref32["generator_out"].items():
        assert max_diff(out[key], expected) <= 1e-4, key
    batch = relative(ref32, "fp32")
    # relative motion through the Animator: 9.5e-7 / 9.5e-7 / 1.8e-6; bound 1e-5
    for key in ("value", "jacobian", "prediction"):
        got = batch.prediction if key == "prediction" else batch.kp_norm[key]
        assert max_diff(got, ref32["relative"][key]) <= 1e-5, key
    step = training_step(ref32, monkeypatch)
    # losses, relative: 7.3e-8 / 1.3e-5 / 1.3e-5; bound 1e-4
    for key, expected in ref32["train_losses"].items():
        assert step["losses"][key] == pytest.approx(expected, rel=1e-4), key
    assert step["disc_loss"] == pytest.approx(ref32["disc_loss"], rel=1e-4)  # 0 / 7.3e-6 / 1.2e-5
    # gradients, relative to the module's largest: generator 1.7e-6 / 3.3e-2 / 1.5e-2, kp detector
    # 1.7e-6 / 2.0e-2 / 9.3e-3, discriminator 1.9e-7 / 5.0e-3 / 5.1e-3 (this small adversarial model amplifies the
    # kernels' rounding, README); bound 0.1: a wrong term or sign moves them by the largest gradient itself
    for name, module in step["modules"].items():
        worst, scale = worst_gradient(module, ref32["grads"][name])
        assert worst <= 0.1 * scale, f"{name}: gradient off by {worst:.3g} (largest {scale:.3g})"


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


@pytest.mark.parametrize("precision", ["bf16", "auto"])
def test_bf16_and_auto_inference_stay_close_to_the_original(ref32, precision):
    """bf16 autocast (8-bit mantissa), native or emulated: predictions within 0.02 of the original, mean 0.003,
    keypoints within 0.02, Jacobians within 0.03. Measured for explicit bf16 (channels_last, the default):
    prediction 4.2e-3 / 3.7e-3 / 3.7e-3, mean 7.1e-4 each, keypoints 4.5e-3 each, Jacobians 6.8e-3 each (default
    ISA with native AVX512-BF16 / ONEDNN_MAX_CPU_ISA=AVX2 / =SSE41, both emulated). "auto" is bf16 where the CPU
    has native bf16 and fp32 elsewhere (fomm.precision); fp32 is far inside the same bounds."""
    anim = animator(ref32, precision)
    assert anim.dtype == (torch.bfloat16 if precision == "bf16" or native_bf16(anim.device) else None)
    batch = relative(ref32, precision)
    rel = ref32["relative"]
    assert batch.prediction.dtype == torch.float32
    err = (batch.prediction - rel["prediction"]).abs()
    assert float(err.max()) <= 0.02 and float(err.mean()) <= 0.003
    assert max_diff(batch.kp_norm["value"], rel["value"]) <= 0.02
    assert max_diff(batch.kp_norm["jacobian"], rel["jacobian"]) <= 0.03


def test_channels_last_only_reorders_memory(ref, ref32):
    """channels_last against the original: float64 within 1e-10 (measured 9.4e-16 under every ISA cap); fp32
    within 1e-5 (measured 3.0e-7 / 3.0e-7 / 4.2e-7, default / AVX2 / SSE41)."""
    for r, bound in ((ref, 1e-10), (ref32, 1e-5)):
        for memory in (True, False):
            batch = relative(r, "fp32", channels_last=memory)
            assert max_diff(batch.prediction, r["relative"]["prediction"]) <= bound, (r["source"].dtype, memory)


def test_folded_batch_norm_computes_the_same_and_saves_a_plain_checkpoint(ref):
    from fomm.blocks import FoldedBatchNorm2d, fold_batch_norm

    det, gen, cfg = build(ref)
    with torch.no_grad():
        kp = det(ref["source"])
        before = gen(ref["source"], kp_driving=kp, kp_source=kp)["prediction"]
        fold_batch_norm(det), fold_batch_norm(gen)
        folded = [m for m in gen.modules() if isinstance(m, FoldedBatchNorm2d)]
        # every conv → norm pair: 2 down, 2 up, first, hourglass 3 + 3, and the second norm of 2 res blocks
        assert len(folded) == 13
        # float64: folding moves the prediction by rounding alone (measured 7.8e-16); bound 1e-12
        assert max_diff(gen(ref["source"], kp_driving=kp, kp_source=kp)["prediction"], before) <= 1e-12
        plain = OcclusionAwareGenerator.from_config(cfg).double().eval()
        plain.load_state_dict(gen.state_dict())  # the same keys: a checkpoint any model loads
        assert max_diff(plain(ref["source"], kp_driving=kp, kp_source=kp)["prediction"], before) <= 1e-12
    with pytest.raises(RuntimeError, match="inference only"):
        gen.train()(ref["source"], kp_driving=kp, kp_source=kp)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norm(plain.train())


def test_reconstruction_follows_the_video_dtype(ref):
    """fomm.reconstruct in float64, in batches: every frame rebuilt from frame 0 with its own absolute keypoints
    (the detector's parity: test_inference_outputs_match_the_original_in_float64), on 8-bit levels."""
    from fomm.reconstruction import reconstruct

    det, gen, _ = build(ref)
    video = ref["driving"]  # 4×3×H×W
    prediction = reconstruct(det, gen, video, batch_size=3)
    assert prediction.dtype == torch.float64
    with torch.no_grad():
        kp_s, kp_d = det(video[:1]), det(video)
        kp_s4 = {k: v.expand(4, *v.shape[1:]) for k, v in kp_s.items()}
        full = gen(video[:1].expand(4, -1, -1, -1), kp_driving=kp_d, kp_source=kp_s4)["prediction"]
    assert max_diff(prediction, full.clamp(0, 1).mul(255).round().div(255)) <= 1e-10  # measured 0
