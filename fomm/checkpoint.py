"""Checkpoint I/O in the original format: generator, kp_detector, discriminator, optimizers, epoch."""

from __future__ import annotations

import io
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""
    user_error = True  # services.cli.run_cli answers it with one line (fomm imports nothing of ours)


ZIP_HEAD = b"PK\x03\x04"  # the first bytes of torch.save's zip format


def _unreadable(path: str | Path, err: BaseException) -> CheckpointError:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {reason}")


def _refused(path: str | Path, err: pickle.UnpicklingError) -> CheckpointError:
    """torch's weights-only refusal, told apart: a class it may not build (a foreign object) or an opcode no pickle
    holds (damaged bytes); its advice to load with weights_only=False is left out."""
    if named := re.search(r"\bGLOBAL ([\w.]+)", str(err)):  # "Unsupported global: GLOBAL x", "unsupported GLOBAL x"
        return CheckpointError(f"{path}: refused to load: it holds a {named.group(1)} object, and only tensors and "
                               f"plain containers are read (weights_only=True)")
    found = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
    if found is None:  # pickle's own (damaged bytes): its first line
        return _unreadable(path, err)
    return _unreadable(path, ValueError(found.group(1).strip()))


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    data: bytes | None = None) -> dict[str, Any]:
    """Read a checkpoint dict safely (weights_only=True: tensors and plain containers only); from `data`, the
    file's bytes already read, when given (`path` then only names it in errors)."""
    if data is None and not Path(path).is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    # `data`: the bytes already read; `path` may then be a URL, nothing to open again
    with open(path, "rb") if data is None else io.BytesIO(data) as f:
        require_checkpoint(f, path)
    try:
        source = Path(path) if data is None else io.BytesIO(data)
        with warnings.catch_warnings():  # torch warns of a pickle protocol other than 2 before reading on
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise _refused(path, err) from None
    except Exception as err:  # noqa: BLE001 - damaged bytes fail anywhere in torch's reader (IndexError, EOFError...)
        raise _unreadable(path, err) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of state dicts, got {type(state).__name__}")
    return state


def require_checkpoint(f: BinaryIO, path: str | Path) -> None:
    """Refuse a file torch.save did not write, or its zip cut off (no zip directory at its end), by reading its head
    and that directory alone (a few KB, also on S3: a 12 GB file was read whole first); a legacy pickle passes
    (read_checkpoint judges it whole)."""
    head = f.read(4)
    if not head.startswith((ZIP_HEAD, b"\x80")):  # torch.save's zip, or a legacy pickle
        if str(path).lower().endswith((".yaml", ".yml")):  # --config and --checkpoint swapped
            raise CheckpointError(f"{path}: a YAML config, not a checkpoint (a config goes to --config)")
        raise CheckpointError(f"{path}: not a checkpoint (expected a PyTorch .pth/.pth.tar file saved by torch.save)")
    try:
        if head == ZIP_HEAD:
            zipfile.ZipFile(f).close()
    except (zipfile.BadZipFile, EOFError, ValueError) as err:
        raise _unreadable(path, err) from None


# the original format's parts: the three networks and their optimisers
PARTS = ("generator", "kp_detector", "discriminator", "optimizer_generator", "optimizer_kp_detector",
         "optimizer_discriminator")


def _known(parts: dict[str, Any]) -> dict[str, Any]:
    if unknown := set(parts) - set(PARTS):
        raise TypeError(f"not a checkpoint part: {', '.join(sorted(unknown))} (parts: {', '.join(PARTS)})")
    return parts


def load_state(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path, name: str) -> None:
    """load_state_dict(strict=True), turning a mismatch into an error naming the file and the keys; the `module.`
    prefix of a state saved from a DataParallel or DDP wrapper is taken off."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: '{name}' is not a state dict of tensors (it holds the "
                              f"{type(state).__name__} {str(state)[:40]!r})")
    own = module.state_dict()
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in own):
        state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from (Distributed)DataParallel
    problems = {"missing": [k for k in own if k not in state], "unexpected": [k for k in state if k not in own],
                "shape mismatch": [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                                   for k in own if k in state and hasattr(state[k], "shape")
                                   and state[k].shape != own[k].shape]}
    parts = [f"{label} {len(keys)}: {', '.join(keys[:8])}" + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
             for label, keys in problems.items() if keys]
    if parts:
        raise CheckpointError(f"{path}: '{name}' does not fit the model config: {'; '.join(parts)}")
    if odd := next((k for k, v in state.items() if not _same_kind(v, own[k])), None):  # loaded, it would be cast
        held = state[odd]
        what = f"a {held.dtype} {str(held.layout).removeprefix('torch.')} tensor on {held.device}" \
            if torch.is_tensor(held) else f"the {type(held).__name__} {str(held)[:40]!r}"
        raise CheckpointError(f"{path}: '{name}' holds {odd} as {what}, not a dense {own[odd].dtype} tensor (a "
                              "damaged or converted checkpoint)")
    if bad := [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]:
        raise CheckpointError(f"{path}: '{name}' holds NaN or inf values ({len(bad)} of its tensors, e.g. "
                              f"{bad[0]}): the weights of a diverged training run; use a checkpoint from before it")
    if bad := [k for k, v in state.items() if k.endswith("running_var") and bool((v < 0).any())]:  # dense tensors
        raise CheckpointError(f"{path}: '{name}' holds negative batch-norm variances ({len(bad)} of its tensors, e.g. "
                              f"{bad[0]}): a damaged checkpoint (the model's output would be NaN)")
    module.load_state_dict(state, strict=True)


def _same_kind(held: Any, own: torch.Tensor) -> bool:
    """A saved value load_state_dict would copy into `own` as it is: a dense tensor in memory, floating point where
    the model's is (an int or bool weight would be truncated or binarised; complex, sparse and meta ones fail)."""
    return (torch.is_tensor(held) and held.layout == torch.strided and not held.is_meta and not held.is_complex()
            and held.is_floating_point() == own.is_floating_point())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", data: bytes | None = None,
                    **parts: nn.Module | torch.optim.Optimizer | None) -> int:
    """Load the modules and optimisers given under the format's names (generator, kp_detector, discriminator,
    optimizer_<name>; an optimiser the file lacks keeps its state) from a checkpoint (`data`: its bytes, already
    read); returns its epoch."""
    return load_parts(read_checkpoint(path, map_location, data), path, **parts)


def load_parts(state: dict[str, Any], path: str | Path,
               **parts: nn.Module | torch.optim.Optimizer | None) -> int:
    """load_checkpoint on a checkpoint dict already read (read_checkpoint) from `path`; returns its epoch."""
    for name, part in _known(parts).items():
        if isinstance(part, torch.optim.Optimizer):
            if name in state:
                part.load_state_dict(state[name])
        elif part is not None:
            if name not in state:
                raise CheckpointError(f"{path}: has no '{name}' (keys: {', '.join(sorted(state))})")
            load_state(_unwrap(part), state[name], path, name)
    return checkpoint_epoch(state, path)


def checkpoint_epoch(state: dict[str, Any], path: str | Path) -> int:
    """The epoch a checkpoint dict records (0 where it records none)."""
    try:
        return int(state.get("epoch", 0))
    except (TypeError, ValueError, OverflowError):  # 'abc', a list, inf: a traceback before
        raise CheckpointError(f"{path}: its 'epoch' is not a whole number ({str(state['epoch'])[:40]!r})") from None


def checkpoint_bytes(epoch: int = 0, extra: dict[str, Any] | None = None,
                     **parts: nn.Module | torch.optim.Optimizer | None) -> bytes:
    """The original format's file contents, `parts` under their names (the caller writes them, whole:
    services.atomic / services.storage)."""
    state = {name: _unwrap(obj).state_dict() for name, obj in _known(parts).items() if obj is not None}
    buffer = io.BytesIO()
    torch.save({**state, "epoch": epoch, **(extra or {})}, buffer)
    return buffer.getvalue()


def _unwrap(module: Any) -> Any:
    """The bare module inside DDP / DataParallel wrappers (keys without a 'module.' prefix); else `module`."""
    return module.module if isinstance(getattr(module, "module", None), nn.Module) else module
