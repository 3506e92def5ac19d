"""The learning-rate schedule spread over a run's budget (`max_steps` and/or `max_minutes`) instead of its epochs.

The original decays the learning rates ×0.1 at `epoch_milestones` (60% and 90% of `num_epochs` in its configs).
When a run is capped by time, epochs that do not fit the budget never reach their decays, and on a quicker machine
the epochs end before the budget does. With `TrainJob.lr_schedule = "budget"` the same milestones apply at the same
fractions of the budget: milestone m decays once `m / num_epochs` of the budget is spent, whatever the machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def epoch_reached(epoch: int, fraction: float, num_epochs: int) -> bool:
    """Whether `fraction` of the budget has reached the point that stands for `epoch` (epoch / num_epochs)."""
    return epoch / num_epochs <= fraction


def lr_factor(fraction: float, milestones: Sequence[int], num_epochs: int) -> float:
    """Learning-rate multiplier at `fraction` of the budget: ×0.1 for each milestone at or before it."""
    return 0.1 ** sum(1 for m in milestones if epoch_reached(m, fraction, num_epochs))


@dataclass(frozen=True)
class Budget:
    """How much of a run's budget is spent, as a fraction in [0, 1].

    `offset` is the fraction that earlier submissions of a resumed run had spent: a new submission's
    `max_minutes` covers the rest (steps count across resumes anyway, as `max_steps` does).
    """

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


def resumed_offset(saved_fraction: float, saved_offset: float, saved_started_at: float | None,
                   started_at: float) -> float:
    """The offset of a restored run: the checkpoint's own when the same submission restarts its workers
    (same start, same deadline), else the fraction the checkpoint had reached (a new submission)."""
    return saved_offset if saved_started_at == started_at else saved_fraction
