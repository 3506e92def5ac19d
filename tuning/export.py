"""Export the best trial as a complete FOMM YAML that `pipelines/train.py --config` accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.atomic import atomic_open
from training.job import resolve_config
from tuning.spaces import apply


def export_best_config(base_config: str | Path, sample: dict[str, Any], out: str | Path,
                       base_overrides: dict | None = None) -> Path:
    """Base YAML + the sweep's own overrides + the best sample → `out` (written atomically)."""
    cfg = apply(resolve_config(base_config, base_overrides), sample)
    with atomic_open(out, "w") as f:  # the folders it needs are made (and go again if the write fails)
        f.write(cfg.to_yaml())
    return Path(out)
