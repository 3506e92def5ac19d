"""Bad flag values for all 11 entry points, generated (hypothesis) from each parser's own declarations.

Each entry point runs in-process from a command line that passes its checks; one flag then gets a generated value
of its family: numbers (negative, zero, NaN, inf, huge, not a number), typos of its choices, paths (missing, a
folder, an empty or binary file, one of the command's inputs), free text. Every case ends in a success (the work
itself is stubbed: the checks passed) or in exactly one stderr line `<prog>: error: …`, the user-error status, no
traceback and no new file. The last test prints the cases run per entry point (also without -s).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.cli import ArgumentParser

EXAMPLES = 60  # per entry point: 11 × 60 cases in well under a minute on 2 cores
CASES: Counter[str] = Counter()
REFUSED: Counter[str] = Counter()
PATH_FLAGS = {"--config", "--checkpoint", "--checkpoints", "--data", "--storage", "--out", "--output", "--input",
              "--source", "--driving", "--pairs", "--space", "--errors", "--video-dir", "--onnx", "--plot"}
NUMBERS = ["nan", "NaN", "inf", "-inf", "-1", "0", "-0.0", "1e308", "1e999", str(10**30), "abc", "", "1,5", "0x10"]


class World(dict):
    """The fixture's inputs; a short repr for hypothesis' reports."""

    def __repr__(self) -> str:
        return "world"


class Reached(BaseException):
    """The stubbed work was reached: every check passed (a success here)."""


def _stub(*args: object, **kwargs: object) -> None:
    raise Reached


def _pipeline(repo_root: Path, name: str) -> Callable[[list[str]], int]:
    spec = importlib.util.spec_from_file_location(f"fuzz_pipeline_{name}", repo_root / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def world(tmp_path_factory, repo_root, shared_data, tiny_config_path) -> dict:
    """Valid inputs of every entry point, and the stubs that stand for the work after the checks."""
    from animate.cli import main as fomm
    from fomm.animator import Animator
    from fomm.checkpoint import checkpoint_bytes
    from preprocessing.synthetic import write_synthetic_shards

    root = tmp_path_factory.mktemp("fuzz")
    tiny = Animator.from_config(tiny_config_path, random_init=True)
    ckpt = root / "tiny.pth.tar"
    ckpt.write_bytes(checkpoint_bytes(generator=tiny.generator, kp_detector=tiny.kp_detector))
    shards = write_synthetic_shards(root / "shards", num_videos=4, size=64, num_frames=12, test_every=2)
    (root / "videos").mkdir()
    shutil.copy(shared_data / "face_talk_a.mp4", root / "videos" / "talk.mp4")
    (root / "empty.txt").write_bytes(b"")
    (root / "pairs.csv").write_text(f"source,driving,output\n{shared_data / 'face_source_c.jpg'},"
                                    f"{root / 'videos' / 'talk.mp4'},{root / 'new' / 'a.mp4'}\n")
    w = World(root=root, **{"config": str(tiny_config_path), "ckpt": str(ckpt), "shards": str(shards),
         "uri": f"sqlite:///{root / 'mlflow.db'}", "out": str(root / "new" / "out"),
         "source": str(shared_data / "face_source_c.jpg"), "driving": str(root / "videos" / "talk.mp4")})
    from services.tracking.store import make_client

    make_client(w["uri"]).search_experiments()  # the store exists (with its tables): what runs compare reads
    model = ["--config", w["config"]]
    w["entry"] = {  # name: (main, prog, user-error status, valid argv)
        "preprocess": (_pipeline(repo_root, "preprocess"), "preprocess", 2,
                       ["--input", str(root / "videos"), "--output", w["out"], "--kind", "none", "--no-ray"]),
        "train": (_pipeline(repo_root, "train"), "train", 2,
                  [*model, "--data", w["shards"], "--storage", w["out"], "--tracking-uri", w["uri"]]),
        "tune": (_pipeline(repo_root, "tune"), "tune", 2,
                 [*model, "--data", w["shards"], "--storage", w["out"], "--tracking-uri", w["uri"], "--space",
                  str(repo_root / "configs" / "sweeps" / "loss-weights.yaml")]),
        "evaluate": (_pipeline(repo_root, "evaluate"), "evaluate", 2,
                     [*model, "--checkpoint", w["ckpt"], "--data", w["shards"], "--out", w["out"], "--tracking-uri",
                      w["uri"], "--workers", "0", "--split", "all"]),
        "benchmark": (_pipeline(repo_root, "benchmark"), "benchmark", 2,
                      [*model, "--checkpoints", w["ckpt"], "--data", w["shards"], "--out", w["out"],
                       "--tracking-uri", w["uri"], "--workers", "0", "--split", "all"]),
        "animate batch": (_pipeline(repo_root, "animate_batch"), "animate_batch", 2,
                          ["--pairs", str(root / "pairs.csv"), *model, "--random-init"]),
        "demo": (_pipeline(repo_root, "demo"), "demo", 2, ["--out", w["out"], *model]),
        "fomm animate": (fomm, "fomm animate", 2,
                         ["animate", *model, "--random-init", "--source", w["source"], "--driving", w["driving"],
                          "--out", w["out"] + ".mp4", "--quiet"]),
        "fomm export": (fomm, "fomm export", 2, ["export", *model, "--random-init", "--out", w["out"]]),
        "fomm info": (fomm, "fomm info", 2, ["info", *model, "--checkpoint", w["ckpt"]]),
        "fomm runs compare": (fomm, "fomm runs compare", 2, ["runs", "compare", "--tracking-uri", w["uri"]]),
    }
    import animate.files
    import evaluation.ray_jobs
    import fomm.onnx_export
    import preprocessing.dataset_writer
    import services.tracking.queries
    import training.trainer
    import tuning.sweep
    from animate import batch

    stubs = [(preprocessing.dataset_writer, "run_local"), (training.trainer, "fit"), (training.trainer, "ensure_training_ray"),
             (tuning.sweep, "run_sweep"), (evaluation.ray_jobs, "init_ray"), (batch, "ensure_ray"),
             (animate.files, "animate_file"), (fomm.onnx_export, "export_onnx"),
             (services.tracking.queries, "search_runs")]
    (root / "cwd").mkdir()
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.chdir(root / "cwd"))  # generated relative paths ("-", "s3:x") land here
        for module, name in stubs:
            stack.enter_context(mock.patch.object(module, name, _stub))
        w["flags"] = {name: flags_of(*entry[::3]) for name, entry in w["entry"].items()}
        yield w


def parser_of(main: Callable[[list[str]], int], argv: list[str]) -> ArgumentParser:
    """The parser `main(argv)` parses with (its subcommand's, for fomm)."""
    seen: list[ArgumentParser] = []

    def grab(self: ArgumentParser, args: list[str] | None = None, namespace: object = None) -> None:
        seen.append(self)
        raise Reached

    with mock.patch.object(ArgumentParser, "parse_args", grab), contextlib.suppress(Reached):
        main(argv)
    parser = seen[-1]
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return sub.choices[argv[0]] if sub is not None else parser


def flags_of(main: Callable[[list[str]], int], argv: list[str]) -> dict[str, argparse.Action]:
    """The value-taking flags of the parser `main(argv)` parses with."""
    return {a.option_strings[-1]: a for a in parser_of(main, argv)._actions
            if a.option_strings and a.nargs != 0 and a.dest not in ("help", "debug")}


def _typo(word: str) -> st.SearchStrategy[str]:
    i = st.integers(0, max(len(word) - 1, 0))
    return st.one_of(i.map(lambda k: word[:k] + word[k + 1:]), i.map(lambda k: word[:k] + word[k:][::-1]),
                     st.just(word.upper()), st.just(word + "s"), st.just(" " + word))


def values(flag: str, action: argparse.Action, w: dict) -> st.SearchStrategy[str]:
    """Bad (and some good) values of the flag's family, from what its parser declares."""
    if action.choices is not None:
        return st.sampled_from(sorted(map(str, action.choices))).flatmap(_typo) | st.text(max_size=6)
    if flag in PATH_FLAGS:
        root = w["root"]
        return st.sampled_from([str(root / "missing" / "x.yaml"), str(root), str(root / "empty.txt"), w["ckpt"],
                                w["config"], w["shards"], w["driving"], w["source"], str(root / "videos"),
                                "s3:/", "", "-", "a\x00b"])
    if getattr(action.type, "__name__", "") in ("int", "float", "parse_size"):
        return st.sampled_from(NUMBERS) | st.integers(-(2**70), 2**70).map(str) | st.floats().map(str)
    return st.text(max_size=8) | st.sampled_from(["", " ", "..", "/", "\x00", "a" * 300, "nan"])


def with_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """argv with `flag` set to `value` (replaced where it is already given)."""
    if flag in argv:
        i = argv.index(flag)
        return [*argv[:i + 1], value, *argv[i + 2:]]
    return [*argv, flag, value]


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


ENTRY_POINTS = ["preprocess", "train", "tune", "evaluate", "benchmark", "animate batch", "demo", "fomm animate",
                "fomm export", "fomm info", "fomm runs compare"]


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_every_flag_says_what_it_does_and_no_default_misleads(world, name) -> None:
    """`--help` explains every flag; `(default: …)` only where it informs: never None or [], never on a switch
    (argparse's own formatter printed `--absolute  absolute keypoints (default: True)`)."""
    main, _, _, argv = world["entry"][name]
    parser = parser_of(main, argv)
    assert [a.option_strings for a in parser._actions if a.option_strings and not a.help] == []
    text = " ".join(parser.format_help().split())
    assert "(default: None)" not in text and "(default: [])" not in text
    if not name.startswith("fomm "):  # a pipeline's is its docstring's first paragraph, whole (was: its first line)
        assert parser.description.endswith("."), parser.description
    formatter = parser._get_formatter()
    for a in parser._actions:
        if a.nargs == 0 and not isinstance(a, argparse.BooleanOptionalAction):  # a switch: what it does, no value
            assert formatter._get_help_string(a) == a.help, a.option_strings


@pytest.mark.parametrize("name", ENTRY_POINTS)
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_generated_flag_value_is_a_success_or_one_line(world, name, data) -> None:
    main, prog, status, argv = world["entry"][name]
    flags = world["flags"][name]
    flag = data.draw(st.sampled_from(sorted(flags)), label="flag")
    value = data.draw(values(flag, flags[flag], world), label="value")
    case = with_flag(argv, flag, value)
    before = files_under(world["root"])
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(case)
    except Reached:
        code = 0
    CASES[name] += 1
    lines = err.getvalue().splitlines()  # the --random-init warning goes with the result, on stdout
    if code == 0:
        return
    REFUSED[name] += 1
    assert code == status and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), (case, err.getvalue())
    assert files_under(world["root"]) == before, case  # nothing left behind


def test_every_entry_point_was_fuzzed(record_property) -> None:
    """Runs after the cases above (file order): how many each entry point got, shown in `make test`'s summary."""
    record_property("summary", "generated cases per entry point (refused with one line): " +
                    ", ".join(f"{n} {CASES[n]} ({REFUSED[n]})" for n in ENTRY_POINTS))
    assert all(CASES[n] >= 20 for n in ENTRY_POINTS), CASES  # fomm info: its 2 path flags × 12 paths, all of them
