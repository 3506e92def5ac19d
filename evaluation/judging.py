"""How a run is judged (the benchmark gate, evaluate's failed-clip rule), each field's rule declared once."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.fields import check_fields, rule


@dataclass(frozen=True, kw_only=True)
class Judging:
    """Which metrics are compared and how much worse, or how many failed clips, fail a run."""

    metrics: tuple[str, ...] = field(default=("l1", "akd", "mkr", "aed"), metadata=rule(
        "metrics compared (lower is better), comma-separated"))  # plain names; compared under their logged labels
    primary: str = field(default="l1", metadata=rule("the metric that picks the best earlier run"))
    threshold: float = field(default=0.05, metadata=rule("relative regression threshold", ge=0))
    abs_tolerance: float = field(default=1e-6, metadata=rule("absolute regression tolerance", ge=0))
    max_error_fraction: float = field(default=0.0, metadata=rule(
        "share of clips that may fail (error rows) before the run fails with exit 1", ge=0, le=1))

    def __post_init__(self) -> None:
        check_fields(self)
