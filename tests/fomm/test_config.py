"""Configs: every original-format file loads unchanged; unknown keys are errors naming file and path."""

import dataclasses

import pytest
import yaml

from fomm.config.loader import ConfigError
from fomm.config.model_params import ModelConfig
from fomm.config.schema import FommConfig, load_config

ORIGINAL = ["vox-256", "vox-adv-256", "taichi-256", "taichi-adv-256", "mgif-256", "bair-256", "fashion-256",
            "nemo-256"]


@pytest.mark.parametrize("name", ORIGINAL)
def test_original_configs_load_and_round_trip(repo_root, name):
    path = repo_root / "configs" / f"{name}.yaml"
    cfg = load_config(path)
    raw = yaml.safe_load(path.read_text())
    assert cfg.model_params.common_params.num_kp == raw["model_params"]["common_params"]["num_kp"]
    assert ModelConfig.from_dict(cfg.model_params.to_dict()) == cfg.model_params
    assert FommConfig.from_dict(cfg.to_dict()) == cfg


def test_vox_values(repo_root):
    cfg = load_config(repo_root / "configs" / "vox-256.yaml")
    assert cfg.model_params.kp_detector_params.temperature == 0.1
    assert cfg.model_params.generator_params.dense_motion_params.scale_factor == 0.25
    assert cfg.train_params.epoch_milestones == (60, 90) and cfg.train_params.num_repeats == 75
    assert cfg.train_params.loss_weights.perceptual == (10, 10, 10, 10, 10)
    assert cfg.dataset_params.id_sampling is True
    assert cfg.animate_params.normalization_params.use_relative_jacobian is True
    assert cfg.model_params.common_params.align_corners is False  # the original checkpoints' sampling convention


def test_unknown_key_names_file_and_path(tmp_path):
    path = tmp_path / "vox.yaml"
    path.write_text("model_params:\n  kp_detector_params:\n    tempreture: 0.1\n")
    with pytest.raises(ConfigError, match=r"vox.yaml: model_params.kp_detector_params: unknown key 'tempreture'"):
        load_config(path)


def test_bad_values_and_files(tmp_path):
    path = tmp_path / "neg.yaml"
    path.write_text("model_params:\n  common_params:\n    num_kp: -3\n")
    with pytest.raises(ConfigError, match="neg.yaml: model_params.common_params: num_kp must be positive"):
        load_config(path)
    path.write_text("train_params:\n  loss_weights:\n    keypoint_separation_sigma: 0\n")
    with pytest.raises(ConfigError, match="keypoint_separation_sigma must be positive"):
        load_config(path)
    with pytest.raises(ConfigError, match="missing.yaml: cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_configs_are_frozen(repo_root):
    cfg = load_config(repo_root / "configs" / "tiny-64.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train_params.batch_size = 3  # type: ignore[misc]
    assert dataclasses.replace(cfg.train_params, batch_size=3).batch_size == 3


def test_freezing_batch_norm_before_the_first_decay_warns(repo_root):
    cfg = load_config(repo_root / "configs" / "demo-64.yaml")
    assert cfg.train_params.freeze_batch_norm_epoch == 7 and min(cfg.train_params.epoch_milestones) == 7
    with pytest.warns(UserWarning, match="before the first learning-rate decay"):
        dataclasses.replace(cfg.train_params, freeze_batch_norm_epoch=3)
    with pytest.warns(UserWarning, match="before the first learning-rate decay"):
        dataclasses.replace(cfg.train_params, epoch_milestones=())


def test_a_null_dense_motion_section_is_a_generator_without_one_and_round_trips(repo_root, tmp_path):
    """The original's generator takes dense_motion_params=None (no motion network); a config holding it written out
    as YAML (`null`) read back as the default network before."""
    import torch

    from fomm.models import build_networks

    raw = yaml.safe_load((repo_root / "configs" / "tiny-64.yaml").read_text())
    raw["model_params"]["generator_params"]["dense_motion_params"] = None
    path = tmp_path / "no_motion.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    assert cfg.model_params.generator_params.dense_motion_params is None
    assert FommConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg
    nets = build_networks(cfg.model_params)
    assert nets.generator.dense_motion_network is None
    frame = torch.rand(1, 3, 64, 64)
    kp = nets.kp_detector(frame)
    assert nets.generator(frame, kp, kp)["prediction"].shape == frame.shape
