"""Flags generated from config dataclasses: each default lives in the dataclass; the pipelines' flags prove it."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from dataclasses import dataclass, field

import pytest

from services.cli import ArgumentParser, UserError, field_default, field_flags, field_values
from services.fields import check_fields, rule


@dataclass(frozen=True, kw_only=True)
class Job:
    path: str
    num_workers: int = 3
    tags: dict = field(default_factory=dict)
    fast: bool = False


def test_flags_take_dest_and_default_from_the_field() -> None:
    p = ArgumentParser(prog="p")
    job = field_flags(p, Job)
    job("path", required=True)
    job("num_workers", "--workers", type=int)
    job("fast", action="store_true")
    p.add_argument("--other", default=1)
    args = p.parse_args(["--path", "x"])
    assert (args.num_workers, args.fast, args.other) == (3, False, 1)
    assert Job(**field_values(Job, args)) == Job(path="x")  # --other is not a field: left out
    assert field_values(Job, p.parse_args(["--path", "x", "--workers", "5", "--fast"]), tags={"a": "b"}) == \
        {"path": "x", "num_workers": 5, "fast": True, "tags": {"a": "b"}}
    assert "--workers WORKERS" in p.format_help()
    with pytest.raises(UserError, match="--path"):
        p.parse_args([])
    assert field_default(Job, "tags") == {} and field_default(Job, "path") is dataclasses.MISSING


def _pipeline(repo_root, name: str):  # noqa: ANN202 - the module
    spec = importlib.util.spec_from_file_location(f"pipeline_{name}", repo_root / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_and_tune_flag_defaults_are_the_train_jobs(repo_root) -> None:
    from training.job import TrainJob

    required = ["--config", "c.yaml", "--data", "d", "--storage", "s"]
    args = _pipeline(repo_root, "train").parse_args(required)
    assert TrainJob(**field_values(TrainJob, args)) == TrainJob(config="c.yaml", data="d", storage="s")
    tune = _pipeline(repo_root, "tune").parse_args(required)
    expected = TrainJob(config="c.yaml", data="d", storage="s", experiment="fomm-tune", num_val_clips=4)
    assert TrainJob(**field_values(TrainJob, tune, resume=False)) == expected  # the sweep's two own defaults
    from tuning.options import SweepJob  # tune.py writes these defaults, this checks them

    for name in ("num_samples", "max_concurrent", "grace_period", "resume", "out"):
        assert getattr(tune, name) == field_default(SweepJob, name), name


def test_preprocess_and_evaluate_flag_defaults_are_the_configs(repo_root) -> None:
    from evaluation.cli import eval_config_from_args, eval_flags
    from evaluation.runner import EvalConfig
    from preprocessing.config import PreprocessConfig

    def eval_parser(description: str, experiment: str) -> ArgumentParser:
        p = ArgumentParser(description=description)
        eval_flags(p, experiment)
        return p

    args = _pipeline(repo_root, "preprocess").parse_args(["--input", "i", "--output", "o"])
    assert PreprocessConfig(**field_values(PreprocessConfig, args, shard_bytes=int(args.shard_mb * 2**20))) == \
        PreprocessConfig(input="i", output="o")
    args = eval_parser("e", experiment="fomm-eval").parse_args(["--config", "c", "--checkpoint", "k", "--data", "d"])
    assert eval_config_from_args(args) == EvalConfig(config_path="c", checkpoint="k", data="d")
    args = eval_parser("e", "x").parse_args(["--config", "c", "--checkpoint", "random-init", "--data", "d",
                                             "--split", "all", "--extractor-options", "{dlib-68: {predictor_path: p.dat}}"])
    cfg = eval_config_from_args(args)
    assert (cfg.checkpoint, cfg.split, cfg.experiment, cfg.extractor_options) == \
        (None, None, "x", {"dlib-68": {"predictor_path": "p.dat"}})
    laughs = "[&a [1,1,1,1,1,1,1,1,1], " + ", ".join(f"&{n} [{','.join([f'*{o}'] * 9)}]" for o, n in
                                                      zip("abcdefg", "bcdefgh")) + "]"  # 9^8 ones in 200 bytes
    for options, problem in [
            ("[1, 2]", "expected a YAML/JSON mapping, got '[1, 2]'"),
            # each was a traceback in the driver once Ray and the run had started
            ("{dlib-68: {upsample: 1}}", "dlib-68.upsample: not an option of dlib-68 (it takes predictor_path), got 1"),
            ("{foreground-centroids: {threshold: abc}}", "foreground-centroids.threshold: expected a number, got 'abc'"),
            ("{colour-histogram: {bins: [8, 4]}}", "colour-histogram.bins: expected 3 whole numbers, got [8, 4]"),
            # YAML aliases: its whole repr was the error line (1.4 GB, after a minute); cut to a line now
            (f"{{dlib-68: {laughs}}}", "dlib-68: expected a mapping of options, got [[1, 1, 1, 1, 1, 1, ...], [[...], [...], ")]:
        with pytest.raises(UserError, match="--extractor-options: " + re.escape(problem)) as refused:
            eval_parser("e", "x").parse_args(["--config", "c", "--checkpoint", "k", "--data", "d",
                                              "--extractor-options", options])
        assert len(str(refused.value)) < 250


def test_benchmark_flag_defaults_are_the_benchmark_configs(repo_root) -> None:
    from evaluation.benchmark import BenchmarkConfig

    benchmark = _pipeline(repo_root, "benchmark")
    args = benchmark.parse_args(["--config", "c", "--data", "d", "--checkpoints", "k"])
    assert (args.threshold, args.max_error_fraction, benchmark.build(args).metrics) == tuple(
        field_default(BenchmarkConfig, name) for name in ("threshold", "max_error_fraction", "metrics"))
    assert args.experiment == "fomm-benchmark"


def test_benchmark_and_sweep_configs_built_in_python_keep_the_flags_rules(tiny_config_path) -> None:
    """BenchmarkConfig and the sweep's options declare their rules on the fields: the same check from Python."""
    from evaluation.benchmark import BenchmarkConfig
    from evaluation.runner import EvalConfig
    from services.fields import FieldError
    from training.job import TrainJob
    from tuning.options import SweepJob
    from tuning.spaces import SearchSpace

    ev = EvalConfig(config_path=str(tiny_config_path), checkpoint=None, data="d")
    with pytest.raises(FieldError, match=r"--threshold nan: must be a finite number"):
        BenchmarkConfig(eval=ev, checkpoints="c", threshold=float("nan"))
    with pytest.raises(FieldError, match=r"--max-error-fraction 1.5: must be in \[0, 1\]"):
        BenchmarkConfig(eval=ev, checkpoints="c", max_error_fraction=1.5)
    with pytest.raises(UserError, match="exactly one of --checkpoints or --model-name"):
        BenchmarkConfig(eval=ev)
    base, space = TrainJob(config="c", data="d", storage="s"), SearchSpace({"a.b": ("choice", [1])})
    with pytest.raises(FieldError, match="--max-concurrent 0: must be ≥ 1"):
        SweepJob(base=base, space=space, max_concurrent=0)
    with pytest.raises(FieldError, match="--reduction-factor 1: must be ≥ 2"):
        SweepJob(base=base, space=space, reduction_factor=1)


@dataclass(frozen=True, kw_only=True)
class Ruled:
    rate: float = field(default=1.0, metadata=rule("learning rate", gt=0))
    steps: int | None = field(default=None, metadata=rule("optimiser steps", ge=1, flag="--max-steps"))
    mode: str = field(default="fast", metadata=rule("how", choices=("fast", "slow")))

    def __post_init__(self) -> None:
        check_fields(self)


@pytest.mark.parametrize(("argv", "message"), [
    (["--rate", "nan"], "argument --rate: must be a finite number, got nan"),
    (["--rate", "inf"], "argument --rate: must be a finite number, got inf"),
    (["--rate", "0"], "argument --rate: must be > 0, got 0"),
    (["--rate", "1e999"], "argument --rate: must be a finite number, got 1e999"),
    (["--max-steps", "1.5"], "argument --max-steps: expected an integer, got '1.5'"),
    (["--max-steps", "0"], "argument --max-steps: must be ≥ 1, got 0"),
    (["--mode", "fsat"], "argument --mode: invalid choice: 'fsat'"),
])
def test_a_declared_rule_makes_the_flag_and_checks_it(argv, message) -> None:
    p = ArgumentParser(prog="p")
    add = field_flags(p, Ruled)
    for name in ("rate", "steps", "mode"):
        add(name)
    assert "learning rate" in p.format_help() and "--max-steps MAX_STEPS" in p.format_help()
    assert Ruled(**field_values(Ruled, p.parse_args(["--rate", "0.5", "--max-steps", "3"]))) == \
        Ruled(rate=0.5, steps=3)
    with pytest.raises(UserError, match=f"^{message}"):
        p.parse_args(argv)


def test_the_same_rule_holds_for_a_config_built_in_python() -> None:
    with pytest.raises(UserError, match=r"^--rate nan: must be a finite number$"):
        Ruled(rate=float("nan"))
    with pytest.raises(ValueError, match=r"^--mode fsat: expected one of fast, slow$"):  # also a ValueError
        Ruled(mode="fsat")
    assert Ruled(steps=None).steps is None  # None: not set


def test_a_rules_bounds_read_as_written() -> None:
    """Whole bounds in full (a seed's 2**32 − 1, not 4.29497e+09), fractional ones as %g."""
    from services.fields import Rule

    assert Rule(ge=0, le=2**32 - 1).problem(-1) == "must be in [0, 4294967295]"
    assert Rule(gt=0.001).problem(0) == "must be > 0.001"
    assert Rule(ge=1e-8).problem(0.0) == "must be ≥ 1e-08"
    assert Rule(le=1.0).problem(2) == "must be ≤ 1"


@pytest.mark.parametrize("flag", ["--gpus-per-worker", "--cpus-per-worker", "--max-minutes", "--workers"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_train_numbers_are_finite_and_in_range(repo_root, flag, value) -> None:
    required = ["--config", "c.yaml", "--data", "d", "--storage", "s"]
    with pytest.raises(UserError, match=f"^argument {flag}: "):
        _pipeline(repo_root, "train").parse_args([*required, flag, value])


RAY_STAGES = ("preprocess", "train", "tune", "evaluate", "benchmark", "animate_batch")


@pytest.mark.parametrize("name", RAY_STAGES)
def test_every_ray_stage_takes_the_one_ray_address_flag(repo_root, name, monkeypatch) -> None:
    """`--ray-address` names the cluster on every stage that uses Ray (none says `--address`); the train job
    carries it, and without it $RAY_ADDRESS still counts."""
    from services.ray_address import cluster_address

    flags = _pipeline(repo_root, name).STAGE.parser()._option_string_actions
    assert "--address" not in flags and (flags["--ray-address"].dest, flags["--ray-address"].default) == \
        ("ray_address", None)
    monkeypatch.setenv("RAY_ADDRESS", "ray://env:10001")
    assert cluster_address(None) == "ray://env:10001" and cluster_address("ray://flag:1") == "ray://flag:1"


def test_the_train_job_carries_the_ray_address(repo_root) -> None:
    from training.job import TrainJob

    required = ["--config", "c.yaml", "--data", "d", "--storage", "s", "--ray-address", "ray://head:10001"]
    for name in ("train", "tune"):
        args = _pipeline(repo_root, name).parse_args(required)
        assert TrainJob(**field_values(TrainJob, args)).ray_address == "ray://head:10001"


@pytest.mark.parametrize(("argv", "message"), [
    (["--rate", ""], "argument --rate: expected a value, got ''"),
    (["--mode=", "--rate", "1"], "argument --mode: expected a value, got ''"),
    (["--rate", "1", "--mode", "  "], "argument --mode: expected a value, got '  '"),
    (["--rate", "1", "-m", ""], "argument -m: expected a value, got ''"),  # it named --rate, the flag before
])
def test_an_empty_value_is_refused_before_it_can_mean_the_current_folder(argv, message) -> None:
    """`--output "$OUT"` with OUT unset passes "": as a path that is the current folder, so it is refused."""
    p = ArgumentParser(prog="p")
    add = field_flags(p, Ruled)
    add("rate")
    add("mode", "--mode", "-m")
    with pytest.raises(UserError, match=f"^{message} \\(an unset shell variable\\?\\)$"):
        p.parse_args(argv)


def test_an_empty_output_writes_nothing_into_the_current_folder(repo_root, tmp_path, monkeypatch, capsys) -> None:
    """The preprocess pipeline with --output "" (what an unset variable gives) exits 2 and leaves the folder empty."""
    spec = importlib.util.spec_from_file_location("pipeline_preprocess", repo_root / "pipelines" / "preprocess.py")
    preprocess = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preprocess)
    monkeypatch.chdir(tmp_path)
    assert preprocess.main(["--input", "synthetic:1", "--output", "", "--kind", "none", "--no-ray"]) == 2
    assert capsys.readouterr().err == ("preprocess: error: argument --output: expected a value, got '' (an unset "
                                       "shell variable?)\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--config", "c.yaml", "--storge", "runs"], "unrecognized argument --storge (did you mean --storage?)"),
    (["--confg=c.yaml"], "unrecognized argument --confg (did you mean --config?)"),  # before "required: --config"
    (["--config", "c.yaml", "--storage", "runs", "--frobnicate"], "unrecognized argument --frobnicate"),
    # a flag like none of the stage's was hidden behind "the following arguments are required: --storage"
    (["--config", "c.yaml", "-s", "runs"], "unrecognized argument -s"),
    (["--config", "c.yaml", "--st", "runs", "--smooth", "-1"], "unrecognized arguments --st (did you mean --set?), "
                                                                 "--smooth"),
])
def test_a_misspelt_flag_names_the_flag_meant(repo_root, argv, message) -> None:
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        _pipeline(repo_root, "train").parse_args(["--data", "d", *argv])


@pytest.mark.parametrize(("stage", "argv", "meant"), [
    ("preprocess", ["--input", "in", "--out", "ds"], "--out (did you mean --output?)"),  # the other stages' name
    ("evaluate", ["--output", "eval"], "--output (did you mean --out?)"),  # preprocess's
    ("benchmark", ["--model", "fomm"], "--model (did you mean --model-name?)"),
])
def test_a_flag_cut_short_or_run_on_names_the_one_meant(repo_root, stage, argv, meant) -> None:
    """Names 0.67 alike or less (`out`, `output`) were below difflib's cutoff: the line named no flag."""
    with pytest.raises(UserError, match=f"^unrecognized argument {re.escape(meant)}$"):
        _pipeline(repo_root, stage).parse_args(argv)


def test_a_flag_alike_only_in_its_dashes_suggests_none(repo_root) -> None:
    """tune has no --layout (fomm animate's): difflib on whole flags found "--layout" 0.77 like "--out", the shared
    dashes counting; on names, 0.67, below the cutoff."""
    with pytest.raises(UserError, match=r"^unrecognized argument --layout$"):
        _pipeline(repo_root, "tune").parse_args(["--config", "c.yaml", "--data", "d", "--storage", "s", "--layout", "x"])


def test_a_path_the_shell_left_as_typed_is_the_local_path_meant(repo_root, monkeypatch) -> None:
    """`--storage=~/runs` and a quoted "~/My videos" reach the program with the "~": it is the home folder (a
    folder named "~" was made in the current one); `file:///x` is /x, as fsspec reads it; s3:// stays."""
    monkeypatch.setenv("HOME", "/home/someone")
    args = _pipeline(repo_root, "train").parse_args(["--config", "~/My configs/c.yaml", "--storage=~/runs",
                                                     "--data", "file:///data/shards", "--tracking-uri", "s3://b/~x"])
    assert (args.config, args.storage, args.data, args.tracking_uri) == (
        "/home/someone/My configs/c.yaml", "/home/someone/runs", "/data/shards", "s3://b/~x")


def test_an_experiment_name_mlflow_would_refuse_is_refused_with_the_flags() -> None:
    """A 600-character --experiment ran the whole evaluation, then failed in the store in a line naming no flag."""
    from services.cli import experiment_flag

    p = ArgumentParser(prog="p")
    experiment_flag(p, "fomm-eval", "--experiment", "-e")
    assert p.parse_args(["-e", "x" * 500]).experiment == "x" * 500
    with pytest.raises(UserError, match=r"^argument --experiment/-e: MLflow takes experiment names of at most 500 "
                                        r"characters, got 501$"):
        p.parse_args(["-e", "x" * 501])
