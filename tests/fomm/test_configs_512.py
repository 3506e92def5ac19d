"""vox-512 / taichi-512: the 256² architecture at 512², keypoints and dense motion still computed at 64²."""

import pytest
import torch
import yaml

from fomm.animator import Animator
from fomm.config.schema import load_config


def maps_at(config_path, size: int) -> dict:  # noqa: ANN001
    """Spatial sizes of what each network works at, from a random-init forward at batch 1."""
    torch.manual_seed(0)
    animator = Animator.from_config(config_path, random_init=True)
    seen = {}

    def record(module, args, out) -> None:  # noqa: ANN001 - the keypoint heatmaps' size
        seen["kp"] = tuple(out.shape[-2:])

    animator.kp_detector.kp.register_forward_hook(record)
    x = torch.rand(1, 3, size, size)
    with torch.inference_mode():
        kp = animator.kp_detector(x)
        out = animator.generator(x, kp_driving=kp, kp_source=kp)
    seen.update(mask=tuple(out["mask"].shape[-2:]), prediction=tuple(out["prediction"].shape))
    return seen


@pytest.mark.parametrize("name", ["vox", "taichi"])
def test_512_config_is_the_256_one_with_halved_scale_factors(repo_root, name):
    low = yaml.safe_load((repo_root / "configs" / f"{name}-256.yaml").read_text())
    high = yaml.safe_load((repo_root / "configs" / f"{name}-512.yaml").read_text())
    assert high["dataset_params"]["frame_shape"] == [512, 512, 3]
    m_low, m_high = low["model_params"], high["model_params"]
    assert m_high["kp_detector_params"]["scale_factor"] == m_low["kp_detector_params"]["scale_factor"] / 2
    dense_low = m_low["generator_params"].pop("dense_motion_params")
    dense_high = m_high["generator_params"].pop("dense_motion_params")
    assert dense_high.pop("scale_factor") == dense_low.pop("scale_factor") / 2 and dense_high == dense_low
    m_low["kp_detector_params"].pop("scale_factor"), m_high["kp_detector_params"].pop("scale_factor")
    assert m_high == m_low  # otherwise the original architecture, unchanged
    assert load_config(repo_root / "configs" / f"{name}-512.yaml").train_params.batch_size >= 8


def test_vox512_forward_keeps_the_256_motion_resolution(repo_root):
    torch.set_num_threads(2)
    high = maps_at(repo_root / "configs" / "vox-512.yaml", 512)
    assert high["prediction"] == (1, 3, 512, 512)
    assert high["kp"] == (58, 58) and high["mask"] == (64, 64)  # as vox-256 at 256² (kp: 64² − 7×7 conv + 1)
