"""Typed FOMM configs: the schema (`schema`), the YAML → dataclass loader (`loader`), `overrides`."""
