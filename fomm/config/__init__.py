"""Typed FOMM configs: the schema (`schema`), the YAML → dataclass loader (`loader`), dotted overrides (`overrides`).

`from fomm.config import X` works for every section class of the schema.
"""

from typing import Any

from fomm.config import schema
from fomm.config.loader import ConfigError, Section, build, section, to_dict
from fomm.config.overrides import apply_overrides, parse_assignments
from fomm.config.schema import FommConfig, load_config, read_yaml

__all__ = ["ConfigError", "FommConfig", "Section", "apply_overrides", "build", "load_config", "parse_assignments",
           "read_yaml", "section", "to_dict"]


def __getattr__(name: str) -> Any:  # the other schema classes (ModelConfig, TrainParams, ...)
    try:
        return getattr(schema, name)
    except AttributeError:
        raise AttributeError(f"module 'fomm.config' has no attribute {name!r}") from None
