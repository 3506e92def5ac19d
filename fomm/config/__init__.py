"""Typed FOMM configs: the schema (sections), the YAML → dataclass loader, dotted overrides."""

from fomm.config.loader import ConfigError, Section, build, read_yaml, section, to_dict  # noqa: F401
from fomm.config.overrides import apply_overrides, parse_assignments  # noqa: F401
from fomm.config.schema import *  # noqa: F403 - every section class, FommConfig, load_config
