"""Config overrides for the command line (`--set KEY=VALUE`), Ray Tune samples and jobs: dotted or nested keys,
in order; a mapping merges into a mapping, else replaces; a key the config lacks is a ConfigError naming it."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from fomm.config.loader import ConfigError, parse_yaml


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """A copy of nested dict `data` with `overrides` (dotted or nested keys) merged in."""
    out = copy.deepcopy(dict(data))
    for key, value in overrides.items():
        head, _, rest = str(key).partition(".")
        value = {rest: value} if rest else value
        path = f"{where}.{head}" if where else head
        if head not in out:
            raise ConfigError(f"override {path!r}: no such key in the config (known: {', '.join(map(str, out))})")
        if isinstance(value, Mapping) and isinstance(out[head], dict):
            out[head] = apply_overrides(out[head], value, path)
        elif isinstance(value, Mapping) and value and out[head] is not None:
            raise ConfigError(f"override '{path}.{next(iter(value))}': no such key in the config "
                              f"({path} is {out[head]!r}, not a section)")
        else:
            out[head] = copy.deepcopy(value)
    return out


def parse_assignments(items: Iterable[str], flag: str = "--set") -> dict[str, Any]:
    """['KEY=VALUE', ...] → {KEY: value}, the VALUE read as the config file's YAML reads it (JSON too: 2e-4, .0002,
    false, False, [1, 2], null), else kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE, e.g. train_params.lr_generator=2e-4")
        try:
            out[key.strip()] = parse_yaml(text) if text.strip() else text
        except (yaml.YAMLError, ConfigError):
            out[key.strip()] = text
    return out
