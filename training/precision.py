"""Which autocast dtype a worker trains in: `train_params.bf16` is true, false, or "auto" (bf16 where this device
computes it natively: a CUDA GPU with bf16 support, or a CPU with AVX512-BF16 or AMX-BF16 instructions)."""

from __future__ import annotations

from pathlib import Path

import torch

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of the first CPU in `cpuinfo` (Linux); empty where the file is missing."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def native_bf16(device: torch.device, cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether `device` multiplies bf16 in hardware (else bf16 autocast is emulated: slower than fp32 on a CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_flags(cpuinfo) & set(CPU_BF16_FLAGS))
    return False


def autocast_dtype(bf16: bool | str, device: torch.device, cpuinfo: str | Path = "/proc/cpuinfo") -> torch.dtype | None:
    """torch.bfloat16 when `bf16` is true, or "auto" on a device with native bf16; None (fp32) otherwise."""
    if bf16 == "auto":
        return torch.bfloat16 if native_bf16(device, cpuinfo) else None
    return torch.bfloat16 if bf16 else None
