"""The precision rule: train_params.bf16 (true, false, "auto") and --precision auto|fp32|bf16 (bf16 autocast only
where "auto" finds a device that computes bf16 natively)."""

from pathlib import Path

import pytest
import torch

from fomm.config.loader import ConfigError
from fomm.config.schema import load_config
from fomm.precision import autocast_dtype, cpu_flags, native_bf16, precision_name, use_channels_last

CPU = torch.device("cpu")
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"


def test_cpu_flags_read_the_first_cpu_and_tolerate_a_missing_file(tmp_path):
    (tmp_path / "zen4").write_text(ZEN4)
    assert cpu_flags(tmp_path / "zen4") == {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_auto_uses_bf16_only_on_a_cpu_with_native_bf16(tmp_path):
    (tmp_path / "zen4").write_text(ZEN4)
    (tmp_path / "skylake").write_text(SKYLAKE)
    (tmp_path / "sapphire").write_text("flags\t: avx512f amx_bf16 amx_tile\n")
    assert native_bf16(CPU, tmp_path / "zen4") and native_bf16(CPU, tmp_path / "sapphire")
    assert not native_bf16(CPU, tmp_path / "skylake") and not native_bf16(CPU, tmp_path / "missing")
    assert autocast_dtype("auto", CPU, tmp_path / "zen4") is torch.bfloat16
    assert autocast_dtype("auto", CPU, tmp_path / "skylake") is None
    # explicit settings win over the hardware
    assert autocast_dtype(True, CPU, tmp_path / "skylake") is torch.bfloat16
    assert autocast_dtype(False, CPU, tmp_path / "zen4") is None


def test_bf16_setting_is_validated_in_the_config(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train_params:\n  bf16: auto\n")
    assert load_config(path).train_params.bf16 == "auto"
    path.write_text("train_params:\n  bf16: sometimes\n")
    with pytest.raises(ConfigError, match="p.yaml: train_params: bf16 must be true, false or auto"):
        load_config(path)
    path.write_text("train_params:\n  channels_last: often\n")
    with pytest.raises(ConfigError, match="p.yaml: train_params: channels_last must be true, false or auto"):
        load_config(path)


def test_channels_last_auto_follows_the_step_precision():
    assert load_config(CONFIGS / "vox-256.yaml").train_params.channels_last == "auto"
    assert use_channels_last("auto", torch.bfloat16) and not use_channels_last("auto", None)
    assert use_channels_last(True, None) and not use_channels_last(False, torch.bfloat16)


def test_inference_precision_names_and_the_default_of_the_original_configs(tmp_path):
    (tmp_path / "skylake").write_text(SKYLAKE)
    assert autocast_dtype("bf16", CPU, tmp_path / "skylake") is torch.bfloat16
    assert autocast_dtype("fp32", CPU, tmp_path / "skylake") is None
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, got 'fp16'"):
        autocast_dtype("fp16", CPU)
    assert precision_name(torch.bfloat16) == "bf16" and precision_name(None) == "fp32"
    # an original YAML says nothing about bf16: it loads unchanged and trains in the device's auto precision
    assert load_config(CONFIGS / "vox-256.yaml").train_params.bf16 == "auto"
    assert load_config(CONFIGS / "tiny-64.yaml").train_params.bf16 is False
