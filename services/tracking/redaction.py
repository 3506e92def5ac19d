"""Configs made fit for a tracking store: secrets redacted or left out, nested dicts flattened to params."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

PARAM_VALUE_MAX = 500
REDACTED = "<redacted>"
# Key fragments that mark a secret; such values are never sent to MLflow (params, tags or config.yaml).
_SECRET_KEY = re.compile(r"secret|passw|token|access_key|api_key|apikey|credential|private_key|session_key|"
                         r"(^|\.)key$", re.I)  # the last: a leaf named just "key"
_SECRET_VALUE = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{12,}$")  # AWS access key ids


def is_secret(key: str, value: Any = None) -> bool:
    """True when a (dotted) key or its value looks like a credential."""
    return bool(_SECRET_KEY.search(key)) or (isinstance(value, str) and bool(_SECRET_VALUE.match(value)))


def redact(config: Any) -> Any:
    """A YAML-safe copy of a nested config (tuples → lists, numpy → numbers, other objects → str) with secret
    values replaced by '<redacted>'."""
    if isinstance(config, Mapping):
        return {str(k): (REDACTED if is_secret(str(k), v) and not isinstance(v, Mapping) else redact(v))
                for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [redact(v) for v in config]
    if isinstance(config, (np.floating, np.integer)):
        return config.item()
    return config if config is None or isinstance(config, (bool, int, float, str)) else str(config)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict → {dotted.key: str(value)}, values cut to 500 characters, secrets left out."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, prefix=f"{name}."))
        elif not is_secret(name, value):
            flat[name] = ("null" if value is None else str(value))[:PARAM_VALUE_MAX]
    return flat
