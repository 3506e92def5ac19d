"""The `fomm` command line: `animate`, `export`, `info` (animate.commands) and `runs compare` (evaluation.compare),
each a stage (services.stage): a user error is one line naming the flag or file and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import partial

from services.cli import DEBUG_FLAG, run_cli
from services.errors import UserError

COMMANDS = {"animate": "animate a source image with a driving video",
            "export": "write the model as ONNX graphs (kp detector, source, per-frame step)",
            "info": "parameter counts of a config; does a checkpoint fit it?",
            "runs compare": "compare training / evaluation runs (MLflow) in a table or chart"}
USAGE = "usage: fomm {animate,export,info,runs compare} ... [--help]\n\nFirst Order Motion Model: animate, " \
        "inspect.\n\n" + "\n".join(f"  {name:<14} {doc}" for name, doc in COMMANDS.items())


def _refuse(usage: str, missing: str, unknown: str, words: list[str]) -> int:
    """Words that name no stage: --help prints `usage`, else one line (`unknown` formats the first word)."""
    if words[:1] in (["-h"], ["--help"]):
        print(usage)
        return 0
    raise UserError(unknown.format(words[0]) if words else missing)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the subcommand's stage, which parses, checks, runs and answers a user error with one line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = [DEBUG_FLAG] if DEBUG_FLAG in argv else []
    words = [a for a in argv if a != DEBUG_FLAG]
    if words[:1] in (["animate"], ["export"], ["info"]):  # imported here: other commands start without torch
        from animate import commands

        return getattr(commands, words[0].upper()).main([*words[1:], *debug])  # its Stage: ANIMATE, EXPORT, INFO
    if words[:2] == ["runs", "compare"]:
        from evaluation import compare

        return compare.main([*words[2:], *debug])
    if words[:1] == ["runs"]:
        return run_cli(partial(_refuse, "usage: fomm runs compare [ARGS...]  (see `fomm runs compare --help`)",
                               "an action is required: fomm runs compare [ARGS...]",
                               "unknown action {!r} (available: compare)"), [*words[1:], *debug], "fomm runs")
    return run_cli(partial(_refuse, USAGE, f"a command is required ({', '.join(COMMANDS)})",
                           f"unknown command {{!r}} (expected one of: {', '.join(COMMANDS)})"), argv, "fomm")


if __name__ == "__main__":
    sys.exit(main())
