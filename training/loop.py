"""Pieces of the per-worker loop that need no Ray: batches to tensors, validation L1, timing, weight checks, and
the learning-rate schedule spread over a run's budget."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from fomm.reconstruction import l1_per_frame, reconstruct
from training.sync_bn import world_size


def to_model_batch(batch: dict, device: torch.device | str = "cpu",
                   channels_last: bool = False) -> dict[str, Tensor]:
    """{'source', 'driving': B×H×W×3 uint8} → B×3×H×W float in [0, 1] on `device`."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return {key: torch.as_tensor(batch[key]).to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
            .contiguous(memory_format=layout) for key in ("source", "driving")}  # B×3×H×W each


def reconstruction_sums(kp_detector: nn.Module, generator: nn.Module, frames: Tensor,
                        device: torch.device | str = "cpu") -> Tensor:
    """Σ per-frame L1, Σ copy-the-source L1 and the frame count (float64) of clips B×F×H×W×3 uint8, each
    reconstructed from its frame 0 (`fomm.reconstruction`, as the evaluation does) in fp32; the baseline predicts
    frame 0 for every frame."""
    frames = np.array(frames) if isinstance(frames, np.ndarray) else frames  # Ray hands out read-only arrays
    video = torch.as_tensor(frames).to(device).permute(0, 1, 4, 2, 3).float().div_(255.0)  # B×F×3×H×W
    sums = torch.zeros(3, dtype=torch.float64)
    for clip in video:  # F×3×H×W
        prediction = reconstruct(kp_detector, generator, clip, batch_size=len(clip), device=device)
        sums += torch.tensor([float(l1_per_frame(prediction, clip).sum()),
                              float(l1_per_frame(clip[:1].expand_as(clip), clip).sum()), len(clip)])
    return sums


def validate(kp_detector: nn.Module, generator: nn.Module, batches: Iterable[dict],
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Reconstruction L1 over every worker's held-out clips ({'frames': B×F×H×W×3} batches), and the copy-the-source
    baseline's; {} without frames."""
    sums = sum((reconstruction_sums(kp_detector, generator, batch["frames"], device)
                for batch in batches if len(batch["frames"])), torch.zeros(3, dtype=torch.float64))
    if world_size() > 1:  # summed over the DDP workers
        sums = sums.to(_collective_device())
        dist.all_reduce(sums)
    l1, copy_source, count = sums.tolist()
    if count == 0:
        return {}
    l1, base = l1 / count, copy_source / count
    return {"val_l1": l1, "val_l1_copy_source": base, "val_l1_ratio": l1 / base if base > 0 else float("nan")}


def _collective_device() -> str:
    """Where a tensor must be for the process group's collectives (NCCL: on the GPU)."""
    return "cuda" if dist.get_backend() == "nccl" else "cpu"


def weights_fingerprint(modules: dict[str, nn.Module]) -> Tensor:
    """Σw and Σw² of every module's parameters in float64: equal on all workers when DDP keeps them in sync."""
    values = []
    for module in modules.values():
        params = [p.detach().double() for p in module.parameters()]
        values += [sum(p.sum() for p in params).cpu(), sum((p * p).sum() for p in params).cpu()]
    return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in values])


def max_weight_difference(modules: dict[str, nn.Module]) -> float:
    """Largest difference of the fingerprints across DDP workers (0.0 alone)."""
    if world_size() == 1:
        return 0.0
    t = weights_fingerprint(modules).to(_collective_device())
    gathered = [torch.zeros_like(t) for _ in range(world_size())]
    dist.all_gather(gathered, t)
    stacked = torch.stack([g.cpu() for g in gathered])
    return float((stacked - stacked[0]).abs().max())


@dataclass
class StepClock:
    """Splits wall time into waiting for data and computing, for throughput and the data-wait share."""

    data_s: float = 0.0
    compute_s: float = 0.0
    samples: int = 0
    steps: int = 0
    last_wait_s: float = 0.0
    _mark: float = field(default_factory=time.perf_counter)

    def timed(self, batches: Iterable[dict]) -> Iterator[dict]:
        """Yield batches, charging the time spent in next() to data."""
        start = time.perf_counter()
        for batch in batches:
            self._mark = time.perf_counter()
            self.last_wait_s = self._mark - start
            self.data_s += self.last_wait_s
            yield batch
            start = time.perf_counter()  # the step is done: waiting for the next batch begins

    def step_done(self, samples: int, world_size: int = 1) -> dict[str, float]:
        """Close a step; returns this step's figures (samples/s over all workers, assuming equal steps)."""
        compute = time.perf_counter() - self._mark
        self.compute_s += compute
        self.samples += samples
        self.steps += 1
        total = compute + self.last_wait_s
        return {"data_wait_s": self.last_wait_s, "compute_s": compute,
                "samples_per_s": samples * world_size / total if total > 0 else 0.0}

    def summary(self, world_size: int = 1) -> dict[str, float]:
        """Figures over every step since this clock started (per worker unless named otherwise)."""
        total = self.data_s + self.compute_s
        if total <= 0 or self.steps == 0:
            return {}
        return {"epoch_samples_per_s": self.samples * world_size / total,
                "epoch_samples_per_s_per_worker": self.samples / total,
                "epoch_data_wait_fraction": self.data_s / total, "epoch_step_time_s": total / self.steps}


# lr_schedule "budget": milestone m decays once m / num_epochs of max_steps / max_minutes is spent (README)


def epoch_reached(epoch: int, fraction: float, num_epochs: int) -> bool:
    """Whether `fraction` of the budget has reached the point that stands for `epoch` (epoch / num_epochs)."""
    return epoch / num_epochs <= fraction


def lr_factor(fraction: float, milestones: Sequence[int], num_epochs: int) -> float:
    """Learning-rate multiplier at `fraction` of the budget: ×0.1 for each milestone at or before it."""
    return 0.1 ** sum(1 for m in milestones if epoch_reached(m, fraction, num_epochs))


@dataclass(frozen=True)
class Budget:
    """How much of a run's budget is spent, in [0, 1]; `offset`: the fraction earlier submissions of a resumed run
    spent (a new submission's `max_minutes` covers the rest; steps count across resumes anyway)."""

    max_steps: int | None
    seconds: float | None
    started_at: float  # when this submission's time budget began (epoch seconds)
    offset: float = 0.0

    def fraction(self, step: int, now: float) -> float:
        parts = []
        if self.max_steps:
            parts.append(step / self.max_steps)
        if self.seconds:
            spent = max(0.0, now - self.started_at) / self.seconds
            parts.append(self.offset + (1.0 - self.offset) * spent)
        return min(1.0, max(parts, default=0.0))

