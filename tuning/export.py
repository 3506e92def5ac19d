"""Export the best trial as a complete FOMM YAML that `pipelines/train.py --config` accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.job import resolve_config
from tuning.spaces import to_overrides


def deep_update(base: Any, update: Any) -> Any:
    """Nested dicts merged (update wins); anything else is replaced."""
    if isinstance(base, dict) and isinstance(update, dict):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = deep_update(base.get(key), value)
        return merged
    return update


def export_best_config(base_config: str | Path, sample: dict[str, Any], out: str | Path,
                       base_overrides: dict | None = None) -> Path:
    """Base YAML + the sweep's own overrides + the best sample → `out` (written atomically)."""
    overrides = deep_update(base_overrides or {}, to_overrides(sample))
    cfg = resolve_config(base_config, overrides)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(out)
    return out
