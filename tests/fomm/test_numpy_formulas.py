"""The paper's formulas recomputed in numpy from our own modules' raw logits (keypoints, jacobians, dense motion).

A self-consistency check of our code against the formulas, not parity with the original implementation: that
is tests/fomm/test_parity_original.py, against numbers the original code made.
"""

import numpy as np
import pytest
import torch

from fomm.animation import normalize_kp
from fomm.config.schema import load_config
from fomm.generator import OcclusionAwareGenerator
from fomm.keypoint_detector import KPDetector

pytestmark = pytest.mark.numeric


def np_grid(h: int, w: int) -> np.ndarray:
    xs, ys = np.meshgrid(2 * np.arange(w) / (w - 1) - 1, 2 * np.arange(h) / (h - 1) - 1)
    return np.stack([xs, ys], -1)  # h×w×2


def np_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def capture(module: torch.nn.Module, store: dict, name: str):
    return module.register_forward_hook(lambda m, i, o: store.__setitem__(name, o.detach().double().numpy()))


@pytest.fixture(scope="module")
def cfg(tiny_config_path):
    return load_config(tiny_config_path).model_params


def test_keypoints_and_jacobians_from_logits(cfg):
    torch.manual_seed(3)
    det = KPDetector.from_config(cfg).eval()
    torch.nn.init.normal_(det.jacobian.weight, std=0.05)  # leave the identity init so the test can fail
    raw: dict = {}
    capture(det.kp, raw, "logits"), capture(det.jacobian, raw, "jacobian")
    with torch.no_grad():
        out = det(torch.rand(2, 3, 64, 64))
    logits = raw["logits"]  # B×K×h×w
    b, k, h, w = logits.shape
    heat = np_softmax(logits.reshape(b, k, -1) / 0.1, axis=2).reshape(b, k, h, w)
    value = np.einsum("bkhw,hwc->bkc", heat, np_grid(h, w))
    jac = np.einsum("bkhw,bkdhw->bkd", heat, raw["jacobian"].reshape(b, k, 4, h, w)).reshape(b, k, 2, 2)
    assert np.abs(out["value"].numpy() - value).max() < 1e-5
    assert np.abs(out["jacobian"].numpy() - jac).max() < 1e-5


def test_dense_motion_deformation_and_occlusion_from_logits(cfg):
    torch.manual_seed(4)
    det = KPDetector.from_config(cfg).eval()
    gen = OcclusionAwareGenerator.from_config(cfg).eval()
    dm = gen.dense_motion_network
    raw: dict = {}
    capture(dm.mask, raw, "mask"), capture(dm.occlusion, raw, "occlusion")
    src, drv = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        kp_s, kp_d = det(src), det(drv)
        kp_s["jacobian"] = kp_s["jacobian"] + 0.1 * torch.randn_like(kp_s["jacobian"])
        out = dm(kp_driving=kp_d, kp_source=kp_s, source=dm.prepare_source(src, kp_s))
    h, w = out["deformation"].shape[1:3]
    z = np_grid(h, w)  # h×w×2
    vs, vd = kp_s["value"][0].double().numpy(), kp_d["value"][0].double().numpy()
    js, jd = kp_s["jacobian"][0].double().numpy(), kp_d["jacobian"][0].double().numpy()
    motions = [z]
    for k in range(vs.shape[0]):  # Eq. 4 for each keypoint
        jk = js[k] @ np.linalg.inv(jd[k])
        motions.append(np.einsum("ij,hwj->hwi", jk, z - vd[k]) + vs[k])
    masks = np_softmax(raw["mask"][0], axis=0)  # (K+1)×h×w, Eq. 7
    deformation = sum(masks[k][..., None] * motions[k] for k in range(len(motions)))
    assert np.abs(out["deformation"][0].numpy() - deformation).max() < 1e-4
    occlusion = 1 / (1 + np.exp(-raw["occlusion"][0]))
    assert np.abs(out["occlusion_map"][0].numpy() - occlusion).max() < 1e-5


def test_relative_motion_prediction_equals_absolute_prediction_on_initial_frame(cfg):
    torch.manual_seed(5)
    det = KPDetector.from_config(cfg).eval()
    gen = OcclusionAwareGenerator.from_config(cfg).eval()
    src, drv0 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        kp_s, kp_d0 = det(src), det(drv0)
        kp_rel = normalize_kp(kp_s, kp_d0, kp_d0, use_relative_movement=True, use_relative_jacobian=True)
        # relative motion from the initial frame itself gives the source keypoints: the prediction of
        # driving the source with its own keypoints
        a = gen(src, kp_source=kp_s, kp_driving=kp_rel)["prediction"]
        b = gen(src, kp_source=kp_s, kp_driving=kp_s)["prediction"]
    assert torch.allclose(a, b, atol=1e-4)
