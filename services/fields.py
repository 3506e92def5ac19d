"""Declared field rules: a config dataclass's field says once what it accepts; flags, help and checks read it.

    workers: int = field(default=1, metadata=rule("DDP workers", ge=1))

A number is always finite: NaN and infinity are refused everywhere a number is declared.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import operator
import os
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

from services.errors import UserError

RULE = "rule"


class FieldError(UserError, ValueError):
    """A config value outside its declared rule; the message names the flag."""


@dataclass(frozen=True)
class Rule:
    """What one field accepts: a number in [ge, le] (gt: strictly above), one of `choices`; `flag` its name."""

    help: str = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None
    flag: str | None = None

    def problem(self, value: Any) -> str | None:
        """Why `value` breaks the rule, or None when it keeps it (None itself always does: 'not set')."""
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                return "must be a finite number"
            if self.ge is not None and self.le is not None and not self.ge <= value <= self.le:
                return f"must be in [{_bound(self.ge)}, {_bound(self.le)}]"
            for bound, sign, broken in ((self.ge, "≥", operator.lt), (self.gt, ">", operator.le),
                                        (self.le, "≤", operator.gt)):
                if bound is not None and broken(value, bound):
                    return f"must be {sign} {_bound(bound)}"
        if self.choices is not None and value not in self.choices:
            return f"expected one of {', '.join(map(str, self.choices))}"
        return None


def _bound(x: float) -> str:
    """A rule's bound as written: whole numbers in full (4294967295, not 4.29497e+09), others as %g."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def rule(help: str = "", **constraints: Any) -> dict[str, Rule]:  # noqa: A002 - argparse's word
    """Field metadata declaring the field's rule (see Rule)."""
    if "choices" in constraints:
        constraints["choices"] = tuple(constraints["choices"])
    return {RULE: Rule(help, **constraints)}


def flag_of(name: str, r: Rule) -> str:
    return r.flag or "--" + name.replace("_", "-")


def scalar_type(cls: type, name: str) -> type:
    """The field's type with `| None` taken off: int, float, str, bool, …"""
    hint = get_type_hints(cls)[name]
    if get_origin(hint) in (Union, types.UnionType):
        hint = next((a for a in get_args(hint) if a is not type(None)), hint)
    return hint if isinstance(hint, type) else object


def number(kind: type, r: Rule) -> Callable[[str], float]:
    """An argparse `type=`: text → a finite `kind` keeping rule `r` (argparse names the flag in the error)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if (problem := r.problem(value)) is not None:
            raise argparse.ArgumentTypeError(f"{problem}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def env_number(name: str, default: float, kind: type = float, r: Rule = Rule(ge=0)) -> float:
    """Environment variable `name` as a finite `kind` keeping rule `r` (unset or blank: `default`); else a
    FieldError naming the variable."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return number(kind, r)(text)
    except argparse.ArgumentTypeError as err:
        raise FieldError(f"${name}: {err}") from None


def check_fields(obj: Any) -> None:
    """Every declared rule of dataclass instance `obj` holds; else a FieldError naming the flag and the value."""
    for f in dataclasses.fields(obj):
        r = f.metadata.get(RULE)
        if r is not None and (problem := r.problem(value := getattr(obj, f.name))) is not None:
            raise FieldError(f"{flag_of(f.name, r)} {value}: {problem}")
