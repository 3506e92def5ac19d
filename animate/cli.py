"""The `fomm` command line: `animate`, `export`, `info` (animate.commands) and `runs compare` (evaluation.compare),
each a stage (services.stage): a user error is one line naming the flag or file and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.cli import DEBUG_FLAG, run_cli
from services.errors import UserError

COMMANDS = {"animate": "animate a source image with a driving video",
            "export": "write the model as ONNX graphs (kp detector, source, per-frame step)",
            "info": "parameter counts of a config; does a checkpoint fit it?",
            "runs compare": "compare training / evaluation runs (MLflow) in a table or chart"}
USAGE = "usage: fomm {animate,export,info,runs compare} ... [--help]\n\nFirst Order Motion Model: animate, " \
        "inspect.\n\n" + "\n".join(f"  {name:<14} {doc}" for name, doc in COMMANDS.items())


def _stage_main(command: str):  # noqa: ANN202 - the stage's main
    if command == "runs":  # imported here: `fomm runs compare` and `fomm --help` start without torch
        from evaluation import compare

        return compare.main
    from animate import commands

    return {"animate": commands.ANIMATE, "export": commands.EXPORT, "info": commands.INFO}[command].main


def _no_command(argv: list[str]) -> int:
    words = [a for a in argv if a != DEBUG_FLAG]
    if words and words[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not words:
        raise UserError(f"a command is required ({', '.join(COMMANDS)})")
    raise UserError(f"unknown command {words[0]!r} (expected one of: {', '.join(COMMANDS)})")


def _no_action(argv: list[str]) -> int:
    words = [a for a in argv if a != DEBUG_FLAG]
    if words and words[0] in ("-h", "--help"):
        print("usage: fomm runs compare [ARGS...]  (see `fomm runs compare --help`)")
        return 0
    if not words:
        raise UserError("an action is required: fomm runs compare [ARGS...]")
    raise UserError(f"unknown action {words[0]!r} (available: compare)")


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the subcommand's stage, which parses, checks, runs and answers a user error with one line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = [DEBUG_FLAG] if DEBUG_FLAG in argv else []
    words = [a for a in argv if a != DEBUG_FLAG]
    command = words[0] if words else None
    if command in ("animate", "export", "info"):
        return _stage_main(command)([*words[1:], *debug])
    if command == "runs":
        if len(words) > 1 and words[1] == "compare":
            return _stage_main("runs")([*words[2:], *debug])
        return run_cli(_no_action, [*words[1:], *debug], "fomm runs")
    return run_cli(_no_command, argv, "fomm")


if __name__ == "__main__":
    sys.exit(main())
