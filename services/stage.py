"""The stage contract: every pipeline is flags → config → check → run → summary, in this order, through run_cli.

`check` runs before Ray, MLflow or any output exists and may return the config completed (None: as built); `run`
returns a `Summary`. `keeps` names the local folders of a run's resume state ({folder: how to resume}): a failed
run's error line says where it is, and a folder the run made but left without a file is removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from services.cli import RESUME_NOTE, ArgumentParser, run_cli, user_input
from services.ray_address import check_address
from services.ray_start import connected, disconnect

Config = TypeVar("Config")


@dataclass
class Summary:
    """What a run prints (`name: value` lines, then `notes` as they are) and its exit status."""

    lines: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    status: int = 0
    problem: str | None = None  # printed on stderr, as it is, when the status is not 0
    kept_nothing: bool = False  # with a status: nothing of the run is worth keeping (its new folders go whole)

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
    keeps: Callable[[Config], dict[str, str]] = lambda cfg: {}  # local folder → how a failed run resumes there
    # ("": only removed when the run made it and left it empty)

    def parser(self) -> ArgumentParser:
        p = ArgumentParser(prog=self.name, description=" ".join(self.doc.strip().split("\n\n")[0].split()))
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
        cfg = self.check(cfg) or cfg
        if hasattr(args, "ray_address") and not getattr(args, "no_ray", False):  # a stage on Ray: before any output
            check_address(args.ray_address)
        fresh = {folder: made for folder in self.keeps(cfg) if (made := first_missing(folder)) is not None}
        joined = connected()
        try:
            summary = self.run(cfg, args)
        except (Exception, KeyboardInterrupt) as err:  # Ctrl-C too: its line says where the work is kept
            if not hasattr(err, RESUME_NOTE) and (note := resume_note(self.keeps(cfg), fresh)) is not None:
                setattr(err, RESUME_NOTE, note)  # run_cli ends the error line with it (unless the error set one)
            raise
        finally:
            if not joined:  # the Ray this run joined: no worker's output after the run's last line
                disconnect()
        if summary.status:  # a run that made nothing leaves no empty folder either
            resume_note(self.keeps(cfg), fresh, whole=summary.kept_nothing)
        return summary.show()


def first_missing(folder: str) -> Path | None:
    """The outermost of `folder` and its parents that does not exist yet (what a run that makes it creates)."""
    missing = [p for p in (Path(folder), *Path(folder).parents) if not os.path.lexists(p)]
    return missing[-1] if missing else None


def resume_note(keeps: dict[str, str], fresh: dict[str, Path], whole: bool = False) -> str | None:
    """Where a failed run kept resume state and how to go on (None: nowhere); a folder in `fresh` goes (with the
    parents the run made for it, `fresh`'s value) when it holds no file, and with `whole`, whatever it holds."""
    notes = []
    for folder, how in keeps.items():
        root = Path(folder)
        if not root.is_dir():
            continue
        if whole and folder in fresh:
            shutil.rmtree(fresh[folder], ignore_errors=True)
        elif any(p.is_file() for p in root.rglob("*")):
            if how:  # "": a folder only cleaned (e.g. --storage, which holds other runs too)
                notes.append(f"work done so far is kept in {folder}: {how}")
        elif folder in fresh and not any(p.is_file() for p in fresh[folder].rglob("*")):
            shutil.rmtree(fresh[folder], ignore_errors=True)
    return "; ".join(notes) or None
