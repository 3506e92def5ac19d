"""Typed FOMM configs: the schema (`schema`: sections), the YAML → dataclass loader (`loader`), dotted overrides
(`overrides`)."""
