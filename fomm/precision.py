"""The precision rule of training and inference: "auto" is bf16 autocast where the device computes bf16
natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX-BF16), else fp32 (emulated bf16 is slower)."""

from __future__ import annotations

from pathlib import Path

import torch

from fomm.config.schema import PRECISIONS

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of the first CPU in `cpuinfo` (Linux); empty where the file is missing."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return set()
    return next((set(value.split()) for key, _, value in (line.partition(":") for line in lines)
                 if key.strip() == "flags"), set())


def native_bf16(device: torch.device, cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether `device` multiplies bf16 in hardware."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(cpu_flags(cpuinfo) & set(CPU_BF16_FLAGS))


def autocast_dtype(bf16: bool | str, device: torch.device, cpuinfo: str | Path = "/proc/cpuinfo") -> torch.dtype | None:
    """torch.bfloat16 for `bf16` true / "bf16", or "auto" on a device with native bf16, else None (fp32); for
    `train_params.bf16` (true, false, "auto") and the inference option (--precision auto|fp32|bf16) alike."""
    if isinstance(bf16, str):
        if bf16 not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {bf16!r}")
        bf16 = bf16 == "bf16" or (bf16 == "auto" and native_bf16(device, cpuinfo))
    return torch.bfloat16 if bf16 else None


def precision_name(dtype: torch.dtype | None) -> str:
    """'bf16' or 'fp32': what a run logs as its precision."""
    return "bf16" if dtype is torch.bfloat16 else "fp32"


def use_channels_last(setting: bool | str, dtype: torch.dtype | None) -> bool:
    """`train_params.channels_last`: "auto" is on where the step runs in bf16 autocast (where it pays most)."""
    return setting is True or (setting == "auto" and dtype is not None)


def autocast(dtype: torch.dtype | None, device: torch.device) -> torch.autocast:
    """torch.autocast in `dtype` on `device`'s type; a no-op context for fp32 (None)."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
