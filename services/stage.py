"""The stage contract: every pipeline is flags → config → check → run → summary, in this order, through run_cli.

    STAGE = Stage("evaluate", __doc__, add_flags, build, check, run)
    main, parse_args = STAGE.main, STAGE.parse_args

`add_flags` declares the flags (mostly `field_flags` of the config dataclass, whose fields carry their rules);
`build` makes the frozen config (a rule broken there is one line); `check` runs before Ray, MLflow or any output
exists and may return the config completed by what it read (None: the config as built); `run` does the work and returns a `Summary`, printed as `name: value` lines, whose `status` is the exit
status. A stage that made nothing raises `NothingMade`: one line, like any user error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from services.cli import ArgumentParser, run_cli, user_input
from services.errors import UserError

Config = TypeVar("Config")


class NothingMade(UserError):
    """A run that produced nothing (0 clips, 0 steps, 0 frames): an error, not a success."""


@dataclass
class Summary:
    """What a run prints (`name: value` lines, then `notes` as they are) and its exit status."""

    lines: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    status: int = 0
    problem: str | None = None  # printed on stderr, as it is, when the status is not 0

    def show(self) -> int:
        for name, value in self.lines.items():
            print(f"{name}: {value}")
        for note in self.notes:
            print(note)
        if self.status and self.problem:
            print(self.problem, file=sys.stderr)
        return self.status


@dataclass(frozen=True)
class Stage(Generic[Config]):
    """One pipeline; see the module docstring."""

    name: str
    doc: str
    add_flags: Callable[[argparse.ArgumentParser], None]
    build: Callable[[argparse.Namespace], Config]
    check: Callable[[Config], Config | None]
    run: Callable[[Config, argparse.Namespace], Summary]

    def parser(self) -> ArgumentParser:
        p = ArgumentParser(prog=self.name, description=self.doc.strip().splitlines()[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        self.add_flags(p)
        return p

    def parse_args(self, argv: list[str] | None = None) -> argparse.Namespace:
        return self.parser().parse_args(argv)

    def main(self, argv: list[str] | None = None) -> int:
        return run_cli(self._main, argv, self.name)

    def _main(self, argv: list[str]) -> int:
        args = self.parse_args(argv)
        with user_input():
            cfg = self.build(args)
        checked = self.check(cfg)
        return self.run(cfg if checked is None else checked, args).show()
