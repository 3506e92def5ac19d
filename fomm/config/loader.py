"""Generic YAML → frozen dataclass loader with type checks (an int passes as a float, a list becomes a tuple,
`X | None` accepts None; nested dataclasses recursively); errors name the file and the key path."""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
import types
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")
section = dataclass(frozen=True, kw_only=True, slots=True)  # the decorator of every config section
WHOLE_MAX = 2**31 - 1  # a config's whole numbers: sizes, counts and steps as C's int takes them


class ConfigError(ValueError):
    """A config file or section that does not fit the schema; the message names the file and the key."""
    user_error = True  # services.cli.run_cli answers it with one line (fomm imports nothing of ours)


_SHOWN = reprlib.Repr()  # a value in a message, cut to a line: YAML aliases make a nested list of billions in a few
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlevel = 80, 80, 2  # lines (its repr was a 1.4 GB line, after 70 s)


def shown(value: Any, width: int = 160) -> str:
    """`value`'s repr for an error line: long lists and strings cut with '...' (reprlib), the whole to `width`."""
    text = _SHOWN.repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _child(where: str, name: str) -> str:
    return f"{where} {name}" if where.endswith(":") else f"{where}.{name}"


def _describe(hint: Any) -> str:
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(hint))
    if get_origin(hint) is tuple:
        return f"a list of {_describe(get_args(hint)[0])}"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _fits(hint: Any, value: Any) -> bool:
    """Whether `value` (as YAML gives it) has type `hint` under the module's rule."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(arg, value) for arg in args)
    if origin is tuple:
        return isinstance(value, (list, tuple)) and all(_fits(args[0], v) for v in value)
    if isinstance(value, bool) and hint in (int, float):
        return False
    return hint is Any or isinstance(value, (int, float) if hint is float else (origin or hint))


def _finite(value: Any) -> bool:
    """No NaN or infinity in a number or a list of numbers (YAML's .nan/.inf, JSON's NaN/Infinity)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return all(_finite(v) for v in value) if isinstance(value, (list, tuple)) else True


def _dataclass_of(hint: Any) -> type | None:  # X, or the X of X | None
    return next((a for a in (hint, *get_args(hint)) if dataclasses.is_dataclass(a)), None)


def build(cls: type[T], data: Any, where: str) -> T:
    """Dataclass `cls` from a mapping; an unknown key, a wrong type or a bad value is a ConfigError at `where`."""
    data, here = {} if data is None else data, where.removesuffix(":")  # where: "file.yaml:" at the top
    if not isinstance(data, dict):
        raise ConfigError(f"{here}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    if unknown := sorted(set(data) - set(known), key=str):
        raise ConfigError(f"{here}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint, sub = hints[name], _dataclass_of(hints[name])
        if value is None and (known[name].default is None or type(None) in get_args(hint)):
            kwargs[name] = None  # an optional section left out (e.g. crop_param) or null (dense_motion_params)
        elif sub is not None and (isinstance(value, dict) or value is None):
            kwargs[name] = build(sub, value, _child(where, name))
        elif not _fits(hint, value):
            raise ConfigError(f"{_child(where, name)}: expected {_describe(hint)}, got {shown(value)}")
        elif not _finite(value):
            raise ConfigError(f"{_child(where, name)}: expected finite numbers, got {shown(value)}")
        else:
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{here}: {err}") from None  # a file's own check: "file.yaml: …"


def to_dict(obj: Any) -> Any:
    """Plain YAML-ready data: dataclasses → dicts, tuples → lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


class Section:
    """Mixin of a config section: `from_dict` / `to_dict`, and a check of the fields named in `positive` (> 0),
    `non_negative` (≥ 0) and `downscales` (in (0, 1]), each number of a list."""

    positive: ClassVar[tuple[str, ...]] = ()
    non_negative: ClassVar[tuple[str, ...]] = ()
    downscales: ClassVar[tuple[str, ...]] = ()  # an image size times it: the anti-aliased pyramid only shrinks
    at_most: ClassVar[dict[str, int]] = {}  # a whole number's bound where not WHOLE_MAX (a network's depth: 2**n)

    def __post_init__(self) -> None:
        for name in self.downscales:  # a pyramid of no scale: no loss term, or a network of no parameter
            if getattr(self, name) == ():
                raise ValueError(f"{name} must list the pyramid's scales, each in (0, 1], got []")
        rules = ((self.positive, lambda v: v > 0, "positive"), (self.non_negative, lambda v: v >= 0, "≥ 0"),
                 (self.downscales, lambda v: 0 < v <= 1, "in (0, 1] (a downscale of the frame)"))
        for names, holds, what in rules:  # a comparison is False for NaN: refused as well
            for name in names:
                value = getattr(self, name)
                if value is None and names is not self.positive:  # an optional number left unset
                    continue
                if value is None or not all(holds(v) for v in (value if isinstance(value, tuple) else (value,))):
                    raise ValueError(f"{name} must be {what}, got {shown(to_dict(value))}")
        for f in fields(self):  # beyond it: C's integers overflow (a traceback), or 2**n runs for ever
            limit, value = self.at_most.get(f.name, WHOLE_MAX), getattr(self, f.name)
            for v in value if isinstance(value, tuple) else (value,):
                if isinstance(v, int) and not isinstance(v, bool) and not -limit <= v <= limit:
                    raise ValueError(f"{f.name} must be at {'most' if v > 0 else 'least'} {limit if v > 0 else -limit}"
                                     f", got {shown(to_dict(value))}")

    @classmethod
    def from_dict(cls, data: dict | None, where: str | None = None):  # noqa: ANN206 - the subclass
        return build(cls, data, where or cls.__name__)

    def to_dict(self) -> dict:
        return to_dict(self)

    def to_yaml(self) -> str:
        """The section as YAML text (the caller writes it)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the later one silently), and
    reading 1e-5, 2E4 and 1.0e5 as numbers, as YAML 1.2 and JSON do (PyYAML's YAML 1.1 wants a dot and an exponent
    sign: `loguniform: [1e-5, 1e-3]` was two strings, and refused)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep) if key_node.tag != "tag:yaml.org,2002:merge" else None
            if not isinstance(key, str | int | float | bool | None):  # `? [a, b]`: a list as a key (unhashable)
                raise ConfigError(f"line {key_node.start_mark.line + 1}: a {type(key).__name__} as a key (keys are "
                                  "names)")
            if key is not None and key in seen:  # a merge (`<<`): None, not checked
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} given twice in one mapping "
                                  "(YAML would keep only the later one)")
            seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python reads a whole number of at most 4,300 digits (sys.get_int_max_str_digits)
            raise ConfigError(f"line {node.start_mark.line + 1}: a whole number of {len(node.value):,} digits, too "
                              "long to read") from None


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)
_StrictLoader.add_implicit_resolver(  # after PyYAML's own float and int resolvers: only what they leave as strings
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def parse_yaml(text: str) -> Any:
    """YAML text's data, as config files are read (see _StrictLoader)."""
    try:
        return yaml.load(text, _StrictLoader)  # noqa: S506 - a safe loader
    except RecursionError:  # PyYAML recurses once per level: `[[[…]]]` 20,000 deep was a traceback
        raise ConfigError("lists or mappings nested too deeply (hundreds of levels)") from None


MAX_YAML_BYTES = 16 << 20  # a config or a sweep space is a few KB


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """The YAML file's data; an unreadable, empty or non-UTF-8 file or bad YAML is a ConfigError naming the file."""
    path = Path(path)
    if path.is_file() and (size := path.stat().st_size) > MAX_YAML_BYTES:  # read whole, 3 GB took 20 s and 6 GB
        raise ConfigError(f"{path}: {size / 2**20:,.0f} MiB, too large for a {what} (a YAML of a few KB)")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:  # a checkpoint or image given as the config
        with path.open("rb") as f:
            if f.read(4).startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip, a legacy pickle (fomm.checkpoint)
                raise ConfigError(f"{path}: a PyTorch checkpoint, not a YAML {what} (a checkpoint goes to "
                                  "--checkpoint)") from None
        raise ConfigError(f"{path}: not a UTF-8 text {what} ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read {what} ({err.strerror or err})") from None
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if data is None or data == {}:
        raise ConfigError(f"{path}: empty {what} (expected a YAML mapping)")
    return data
