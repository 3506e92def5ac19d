"""The command-line contract of every entry point: a user error is one line naming the flag or file, exit 2."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from services.console import closed_streams, shown
from services.errors import UserError
from services.failures import environment_failure, one_line, stopped_for, user_error_line
from services.fields import RULE, Rule, flag_of, number, scalar_type

USER_ERROR_STATUS = 2
DEBUG_FLAG = "--debug"
RESUME_NOTE = "resume_note"  # an exception's attribute: where a failed run kept its resume state (services.stage)
# the environment variables the product reads (their homes: services.storage, services.tracking.run, training.job,
# fomm.vgg, preprocessing.detection, services.tracking.registry); tests/services/test_cli_contract.py keeps this
# list whole
SETTINGS = ("FOMM_S3_ENDPOINT", "FOMM_S3_MAX_ATTEMPTS", "FOMM_TRACKING_END_WAIT_S", "FOMM_ROOM_WAIT_S",
            "FOMM_VGG19_WEIGHTS", "FOMM_S3FD_WEIGHTS", "FOMM_MODEL_CACHE_DAYS")
# MLflow's, which its users set for every tool: one a letter off (MLFLOW_TRACKING_URL) sent the runs to ./mlruns
MLFLOW_SETTINGS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
                   "MLFLOW_TRACKING_PASSWORD", "MLFLOW_REGISTRY_URI", "MLFLOW_ALLOW_FILE_STORE", "MLFLOW_EXPERIMENT_NAME")


def experiment_flag(parser: argparse.ArgumentParser, stage_default: str, *flags: str) -> None:
    """--experiment: MLflow's own default where its users set one (MLFLOW_EXPERIMENT_NAME), else the stage's."""
    parser.add_argument(*(flags or ("--experiment",)), dest="experiment", type=_experiment_name,
                        default=os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip() or stage_default,
                        help=f"MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else {stage_default})")


def _experiment_name(text: str) -> str:
    """A name MLflow takes for an experiment: refused by the store after the work, in a line naming no flag."""
    if len(text) > 500:
        raise argparse.ArgumentTypeError(f"MLflow takes experiment names of at most 500 characters, got {len(text)}")
    return text


def misspelt_settings() -> None:
    """A FOMM_ variable a letter or two off one of SETTINGS is a typo the product would ignore (the room wait without
    its _S: the default 600 s; the S3 endpoint with two letters swapped: AWS's own), and so is an MLFLOW_ one off one
    of MLFLOW_SETTINGS that MLflow does not read, or a RAY_ one off RAY_ADDRESS (none of Ray's own is that near):
    a UserError naming it and the setting meant."""
    for name in sorted(os.environ):
        for prefix, known, whose in (("FOMM_", SETTINGS, "fomm-pipeline"), ("MLFLOW_", MLFLOW_SETTINGS, "MLflow"),
                                     ("RAY_", ("RAY_ADDRESS",), "Ray")):  # RAY_ADRESS: a local Ray, not the cluster
            if not name.startswith(prefix) or name in known:
                continue
            if near := difflib.get_close_matches(name, known, 1, cutoff=0.85):
                if prefix == "MLFLOW_":
                    from services.tracking.store import mlflow_reads  # MLflow's own list (imports MLflow)

                    if mlflow_reads(name):
                        continue
                raise UserError(f"${name}: not a setting of {whose} (did you mean {near[0]}?)")


@contextlib.contextmanager
def user_input(where: str = "") -> Iterator[None]:
    """Turn a ValueError/OSError raised while checking inputs into a UserError (prefixed with `where`)."""
    try:
        yield
    except UserError:
        raise
    except (ValueError, OSError) as err:
        raise UserError(f"{where}: {one_line(err)}" if where else one_line(err)) from err


class Terminated(KeyboardInterrupt):
    """SIGTERM (Kubernetes, `ray job stop`, `kill`) or SIGHUP (its terminal closed: an SSH session gone) raised as
    Ctrl-C would be, so the same clean-up runs."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# the one of them that stopped this process, if any: a Ray wait turns any KeyboardInterrupt raised in it into a plain
# one, so the exception alone cannot say
_stopped_by: list[int] = []


def _raise_terminated(signum: int, frame: object) -> None:
    _stopped_by[:] = [signum]
    raise Terminated(f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside: SIGTERM and SIGHUP raise `Terminated` in the main thread (each only where no one else handles
    it: `nohup` keeps SIGHUP ignored)."""
    main = threading.current_thread() is threading.main_thread()
    ours = [sig for sig in STOP_SIGNALS if main and signal.getsignal(sig) is signal.SIG_DFL]
    if ours:
        _stopped_by.clear()
    for sig in ours:
        signal.signal(sig, _raise_terminated)  # services.ray_start puts SIGTERM's back over ray.init's
    try:
        yield
    finally:
        for sig in ours:
            if signal.getsignal(sig) is _raise_terminated:
                signal.signal(sig, signal.SIG_DFL)


def stdout_reader_left() -> bool:
    """Whether stdout is a pipe whose reader has closed it (a write there fails with EPIPE)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no stdout, or not a file
        return False


def current_folder_exists() -> None:
    """The process's current folder is still there: one removed under a shell made every relative path fail, and
    PyTorch's import end the process with MKL's "Cannot load libtorch_cpu.so"."""
    try:
        os.getcwd()
    except FileNotFoundError:
        raise UserError("the current folder was removed after the shell entered it (cd to a folder that exists)"
                        ) from None


def run_cli(main: Callable[[list[str]], int | None], argv: Sequence[str] | None, prog: str) -> int:
    """`main(argv)`'s exit status; a user error or an environment failure (services.failures) → one line on stderr
    and exit 2 (`--debug`: the traceback too). Ctrl-C / SIGTERM / SIGHUP: one line, exit 130 / 143 / 129."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "stdout" in closed_streams():  # print() wrote nothing (an exit 0 that showed nothing), an error a traceback
        print(f"{prog}: error: standard output is closed (>&-): what the command prints would be lost (redirect it "
              "to a file or /dev/null)", file=sys.stderr, flush=True)
        return USER_ERROR_STATUS
    for stream in (sys.stdout, sys.stderr):  # a console that cannot show × or ≥ (a Latin-1 or ASCII locale,
        with contextlib.suppress(AttributeError, ValueError):  # PYTHONIOENCODING=ascii) escapes them: no traceback
            stream.reconfigure(errors="backslashreplace")
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        with sigterm_as_interrupt():
            if not {"-h", "--help"} & set(argv):  # help is shown whatever the environment
                current_folder_exists()
                misspelt_settings()
            return int(main(argv) or 0)
    except Exception as err:
        if isinstance(err, BrokenPipeError) and stdout_reader_left():  # `| head`: ended as a Unix tool ends there
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit fails no more
            return 128 + signal.SIGPIPE
        line = user_error_line(err) or environment_failure(err)
        if line is None:
            raise
        if debug:
            traceback.print_exc()
        if note := getattr(err, RESUME_NOTE, None):
            line = f"{line} ({note})"
        sys.stdout.flush()  # what the run printed first, where both streams go to one file or pipe
        print(f"{prog}: error: {shown(line)}", file=sys.stderr, flush=True)
        return USER_ERROR_STATUS
    except KeyboardInterrupt as err:
        if debug:
            traceback.print_exc()
        stopped = signal.Signals(_stopped_by[0]) if _stopped_by else None  # set whenever Terminated is raised
        kept = f" ({note})" if (note := getattr(err, RESUME_NOTE, None)) else ""
        sys.stdout.flush()
        if stopped_for:  # not the user's: a fault a watcher thread found (services.ray_start: the local Ray died)
            print(f"{prog}: error: {shown(stopped_for.pop() + kept)}", file=sys.stderr, flush=True)
            return USER_ERROR_STATUS
        with contextlib.suppress(OSError):  # a closed terminal (SIGHUP) takes no line
            print(f"{prog}: {f'stopped by {stopped.name}' if stopped else 'interrupted'}{kept}", file=sys.stderr,
                  flush=True)
        return 128 + (stopped or signal.SIGINT)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`(default: …)` where it tells something: not on a required flag, a default of None or [], a switch
    (`--absolute` would read "default: True", the value of `relative` it clears) or a help naming its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        switch = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        empty = action.default is None or action.default == []
        if action.required or empty or switch or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


# the original FOMM's demo.py / run.py flags, as its users type them, and ours (said where the command has ours)
ORIGINAL_FLAGS = {"--source_image": "--source", "--driving_video": "--driving", "--result_video": "--out",
                  "--adapt_scale": "--adapt-scale", "--find_best_frame": "--find-best-frame",
                  "--best_frame": "--find-best-frame", "--cpu": "--device cpu", "--log_dir": "--storage",
                  "--device_ids": "--workers N --gpus-per-worker 1"}


class ArgumentParser(argparse.ArgumentParser):
    """argparse listing `--debug`, whose usage errors are a UserError; flags only as spelt (no abbreviations)."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - argparse's own signature
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of an input error")

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        """argparse's, refusing first an empty value (a path "" would mean the current folder: `--output "$OUT"`
        with OUT unset would write there), then a misspelt flag, naming the flag meant."""
        argv = list(sys.argv[1:] if args is None else args)
        for i, token in enumerate(argv):
            flag, eq, value = token.partition("=") if token.startswith("--") else ("", "", token)
            if (eq or not flag) and not value.strip():
                before = [t.partition("=")[0] for t in argv[:i]  # -e too: a short flag a value follows
                          if (t.startswith("--") and t != "--") or t in self._option_string_actions]
                named = flag or (before[-1] if before else None)  # --x= , or the flag the value follows
                where = f"argument {named}: expected a value" if named else "expected an argument"
                self.error(f"{where}, got {value!r} (an unset shell variable?)")
        known, typos = [s for s in self._option_string_actions if s.startswith("--")], []
        for token in argv[:argv.index("--") if "--" in argv else None]:  # before "required: …" hides the typo
            flag = token.partition("=")[0]
            if not (flag.startswith("--") or flag[:1] == "-" and flag[1:2].isalpha()) or \
                    flag in self._option_string_actions:
                continue  # a value (-1, a path), or a flag of this parser
            if ORIGINAL_FLAGS.get(flag, "").split(" ")[0] in known:  # difflib: --result_video → --relative
                typos.append(f"{flag} (did you mean {ORIGINAL_FLAGS[flag]}?)")
            elif near := difflib.get_close_matches(flag[2:], [k[2:] for k in known], 1, cutoff=0.7):  # names alike,
                typos.append(f"{flag} (did you mean --{near[0]}?)")  # not only their dashes: --out is no --layout
            elif len(near := [k for k in known if len(k) > 3 and len(flag) > 3 and (k.startswith(flag) or
                                                                                  flag.startswith(k))]) == 1:
                typos.append(f"{flag} (did you mean {near[0]}?)")  # --out where the stage says --output, or back
            elif self._subparsers is None:  # like none of its flags (-o, --src): named, not "required: --out"
                typos.append(flag)
        if typos:  # all at once: a command of the original's names has several
            self.error(f"unrecognized argument{'s' if len(typos) > 1 else ''} {', '.join(typos)}")
        parsed, rest = super().parse_known_args(argv, namespace)
        for name, value in vars(parsed).items():  # a path the shell left as typed: quoted, or after --flag=
            if isinstance(value, str) and value.startswith(("~", "file://")):
                setattr(parsed, name, user_path(value))
        return parsed, rest


def user_path(text: str) -> str:
    """A local path as users write it: `~` is their home folder (not a folder named "~" made in this one) and
    `file:///x` is /x; anything else, s3:// included, as it is."""
    return os.path.expanduser(text.removeprefix("file://"))


def at_least(minimum: float, kind: type = int, at_most: float | None = None) -> Callable[[str], float]:
    """An argparse `type=`: a finite number of `kind` ≥ minimum (and ≤ at_most; the error names the flag)."""
    return number(kind, Rule(ge=minimum, le=at_most))


def field_default(cls: type, name: str) -> Any:
    """The default of field `name` of dataclass `cls` (its factory called); dataclasses.MISSING if it has none."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def field_flags(parser: argparse.ArgumentParser, cls: type) -> Callable[..., argparse.Action]:
    """`add(field, *flags, **kwargs)`: a flag (dest: the field) taking its default, name, help, choices and checked
    number type from dataclass `cls`'s field and its `services.fields.rule`, unless given here."""

    def add(name: str, *flags: str, **kwargs: Any) -> argparse.Action:
        default = field_default(cls, name)
        if default is not dataclasses.MISSING:
            kwargs.setdefault("default", default)
        r = {f.name: f for f in dataclasses.fields(cls)}[name].metadata.get(RULE, Rule())
        flags = flags or (flag_of(name, r),)
        if r.help:
            kwargs.setdefault("help", r.help)
        if r.choices is not None and "action" not in kwargs:
            kwargs.setdefault("choices", r.choices)
        kind = kwargs.get("type", scalar_type(cls, name))
        if "action" not in kwargs and kind in (int, float):  # a plain int/float: finite, and the rule's range
            kwargs["type"] = number(kind, r)
        if "action" not in kwargs and "choices" not in kwargs:
            kwargs.setdefault("metavar", flags[0].lstrip("-").replace("-", "_").upper())  # --out OUT, not OUT_DIR
        return parser.add_argument(*flags, dest=name, **kwargs)

    return add


def field_values(cls: type, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for dataclass `cls`: the parsed values whose dest is one of its fields, then `extra`."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {**{k: v for k, v in vars(args).items() if k in names}, **extra}
