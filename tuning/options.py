"""A sweep: the base training job, the search space, trials, concurrency and ASHA's schedule, each field's rule
declared once; imports no Ray Tune."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.fields import check_fields, rule
from training.job import TrainJob
from tuning.spaces import SearchSpace


@dataclass(frozen=True, kw_only=True)
class SweepJob:
    """A sweep of trials of `base` over `space`: its storage is the sweep's storage, its name the sweep's name."""

    base: TrainJob
    space: SearchSpace
    num_samples: int | None = field(default=None, metadata=rule("trials (default: the space file's)", ge=1))
    max_concurrent: int = field(default=1, metadata=rule("trials at once", ge=1))
    grace_period: int = field(default=1, metadata=rule("reports (epochs) before ASHA may stop a trial", ge=1))
    max_reports: int = field(default=100, metadata=rule("ASHA's max_t in reports", ge=1))
    reduction_factor: int = field(default=2, metadata=rule("ASHA's reduction factor", ge=2))
    resume: bool = field(default=False, metadata=rule("restore an interrupted sweep (Tuner.restore)"))
    out: str | None = field(default=None, metadata=rule(
        "best config YAML (default: <storage>/<name>/best.yaml, local only)"))

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def name(self) -> str:
        return self.base.name or f"sweep-{Path(self.base.config).stem}"
