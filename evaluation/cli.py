"""Command-line options shared by pipelines/evaluate.py and pipelines/benchmark.py → EvalConfig."""

from __future__ import annotations

import argparse
import contextlib
import math

import yaml

from evaluation.benchmark import BenchmarkConfig
from evaluation.extractors import EMBEDDING_BACKENDS, KEYPOINT_BACKENDS, option_problem
from evaluation.metrics import FORMULAS
from evaluation.runner import EvalConfig
from fomm.config.loader import ConfigError, parse_yaml, shown
from services import checks
from services.cli import UserError, experiment_flag, field_flags, field_values, user_input
from services.ray_address import add_ray_address_flag
from services.tracking import store_checks


def eval_flags(p: argparse.ArgumentParser, experiment: str, checkpoint_required: bool = True) -> None:
    """The flags pipelines/evaluate.py and pipelines/benchmark.py share, each for an EvalConfig field (its default)."""
    cfg = field_flags(p, EvalConfig)  # help, type and range from EvalConfig's rules
    for name in ("checkpoint", "data") if checkpoint_required else ("config_path", "data"):
        cfg(name, required=True)
    if checkpoint_required:  # a models:/ --checkpoint brings the config registered with it
        cfg("config_path", help="FOMM model config YAML (e.g. configs/vox-256.yaml); a models:/ --checkpoint brings "
                                "the one registered with it")
    for name in ("split", "max_videos", "out_dir", "tracking_uri"):
        cfg(name)
    experiment_flag(p, experiment)
    for name in ("run_name", "domain"):
        cfg(name)
    cfg("keypoints", choices=["auto", "none", *KEYPOINT_BACKENDS])
    cfg("embedding", choices=["auto", "none", *EMBEDDING_BACKENDS])
    cfg("use_mkr", action=argparse.BooleanOptionalAction)
    cfg("extractor_options", type=mapping)
    for name in ("num_workers", "cpus_per_worker", "batch_size", "device"):
        cfg(name)
    add_ray_address_flag(p)
    cfg("endpoint")
    field_flags(p, BenchmarkConfig)("max_error_fraction")  # type, range and help: the benchmark gate's rule


def mapping(text: str) -> dict:
    """An argparse `type=`: a YAML/JSON mapping backend → options of known backends, numbers finite."""
    value = None
    with contextlib.suppress(yaml.YAMLError, ConfigError):  # a key given twice: ConfigError
        value = parse_yaml(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML/JSON mapping, got {shown(text)}")
    known = (*KEYPOINT_BACKENDS, *EMBEDDING_BACKENDS)
    for backend, options in value.items():
        if backend not in known:
            raise argparse.ArgumentTypeError(f"unknown backend {backend!r} (expected some of {', '.join(known)})")
        if not isinstance(options, dict):
            raise argparse.ArgumentTypeError(f"{backend}: expected a mapping of options, got {shown(options)}")
        for key, option in options.items():
            if isinstance(option, float) and not math.isfinite(option):
                raise argparse.ArgumentTypeError(f"{backend}.{key}: must be a finite number, got {option}")
            if problem := option_problem(backend, key, option):
                raise argparse.ArgumentTypeError(f"{backend}.{key}: {problem}, got {shown(option)}")
    return value


def metric_names(flag: str, text: str) -> tuple[str, ...]:
    """'l1,akd' → ('l1', 'akd'), each a per-frame metric name (else a UserError naming the flag)."""
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in names if m not in FORMULAS] or ([] if names else ["(none)"])
    if unknown:
        raise UserError(f"{flag} {text}: unknown metric {unknown[0]!r} (expected some of {', '.join(FORMULAS)})")
    return names


def eval_config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The EvalConfig of eval_flags' flags ('random-init': no checkpoint; split 'all': every clip)."""
    given = getattr(args, "checkpoint", None)
    checkpoint = store_checks.registered_checkpoint("--checkpoint", given, args.tracking_uri)
    config = store_checks.registered_config(args.config_path, checkpoint, given)
    values = field_values(EvalConfig, args, checkpoint=None if checkpoint == "random-init" else checkpoint,
                          config_path=config,
                          split=None if args.split == "all" else args.split,
                          tags={"checkpoint.model_uri": given} if checkpoint != given else {})  # models:/…
    with user_input():
        return EvalConfig(**values)


EVAL_OUTPUTS = {"per_frame.parquet", "per_video.parquet", "errors.parquet", "report"}  # what --out receives


def check_eval_inputs(cfg: EvalConfig, checkpoint_flag: str = "--checkpoint") -> None:
    """Before Ray starts or anything is written: each input and output usable, or an error naming its flag."""
    from services import storage

    checks.device("--device", cfg.device, here=cfg.num_workers == 0)  # else the Ray workers' devices
    checks.existing_file("--config", cfg.config_path, "a FOMM YAML")
    local = cfg.checkpoint is not None and not storage.is_remote(cfg.checkpoint)
    if cfg.checkpoint is not None:
        checks.existing_file(checkpoint_flag, cfg.checkpoint, "a checkpoint file", cfg.endpoint)
    checks.writable_storage("--out", cfg.out_dir, cfg.endpoint)  # the cheap checks first: a mistake answers fast
    checks.not_an_input("--out", cfg.out_dir, {"--data": cfg.data, "--config": cfg.config_path,
                                               checkpoint_flag: cfg.checkpoint}, folder=True)
    if not storage.is_remote(cfg.out_dir):  # evaluation.ray_jobs's tables and report: an earlier one is replaced
        checks.own_folder("--out", cfg.out_dir, EVAL_OUTPUTS, "evaluation")
    store_checks.tracking_uri("--tracking-uri", cfg.tracking_uri, experiment=cfg.experiment)
    from evaluation.reconstruction import ModelSource  # torch, pyarrow: after the checks that need neither
    from preprocessing.shard_set import require_shards

    source = ModelSource.resolve(cfg.config_path, cfg.checkpoint if local else None)
    shard_set = require_shards("--data", cfg.data, cfg.split, cfg.endpoint, source.config.dataset_params.frame_shape)
    if local:
        source.load()  # the checkpoint fits the config
    from evaluation.ray_jobs import select_clips  # last: it imports MLflow (seconds)

    with user_input("--data"):
        select_clips(cfg, shard_set)

