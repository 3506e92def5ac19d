"""Command-line options shared by pipelines/evaluate.py and pipelines/benchmark.py → EvalConfig."""

from __future__ import annotations

import argparse

import yaml

from evaluation.extractors import EMBEDDING_BACKENDS, KEYPOINT_BACKENDS
from evaluation.runner import DOMAINS, EvalConfig
from services import checks
from services.cli import UserError, at_least, user_input


def add_eval_arguments(p: argparse.ArgumentParser, checkpoint_required: bool = True) -> None:
    p.add_argument("--config", required=True, help="FOMM model config YAML (e.g. configs/vox-256.yaml)")
    if checkpoint_required:
        p.add_argument("--checkpoint", required=True,
                       help="original-format checkpoint (local or s3://); 'random-init' = untrained smoke run")
    p.add_argument("--data", required=True, help="clip shards: dataset root, shard folder or file (local or s3://)")
    p.add_argument("--split", default="test", help="shard split to evaluate; 'all' for every clip (default test)")
    p.add_argument("--max-videos", type=at_least(1), default=None, help="evaluate only the first N clips")
    p.add_argument("--out", default="eval_output", help="folder for Parquet tables and the report")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or "
                   "./mlruns/mlflow.db)")
    p.add_argument("--experiment", default=None, help="MLflow experiment")
    p.add_argument("--run-name", default=None)
    p.add_argument("--domain", choices=DOMAINS, default="face",
                   help="picks the 'auto' extractors and MKR (on for body); default face")
    p.add_argument("--keypoints", default="auto", choices=["auto", "none", *KEYPOINT_BACKENDS],
                   help="AKD/MKR backend; auto = the paper's if its weights are here, else an offline one")
    p.add_argument("--embedding", default="auto", choices=["auto", "none", *EMBEDDING_BACKENDS],
                   help="AED backend; auto as above")
    p.add_argument("--mkr", action=argparse.BooleanOptionalAction, default=None, help="report MKR")
    p.add_argument("--extractor-options", default=None,
                   help="YAML/JSON mapping backend → options, e.g. \"{face-alignment: {hub_dir: /models/hub}}\"")
    p.add_argument("--workers", type=at_least(0), default=2, help="Ray Data actors (0 = no Ray, in-process)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--batch-size", type=at_least(1), default=16, help="frames per generator call")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default $RAY_ADDRESS or local)")
    p.add_argument("--endpoint", default=None, help="S3 endpoint override for s3:// paths")
    p.add_argument("--max-error-fraction", type=fraction, default=0.0,
                   help="share of clips that may fail (error rows) before the run fails with exit 1 (default 0)")


def metric_names(flag: str, text: str) -> tuple[str, ...]:
    """'l1,akd' → ('l1', 'akd'), each a per-frame metric name (else a UserError naming the flag)."""
    from evaluation.scoring import PER_FRAME_METRICS

    names = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in names if m not in PER_FRAME_METRICS] or ([] if names else ["(none)"])
    if unknown:
        raise UserError(f"{flag} {text}: unknown metric {unknown[0]!r} (expected some of {', '.join(PER_FRAME_METRICS)})")
    return names


def fraction(text: str) -> float:
    """An argparse `type=`: a number in [0, 1]."""
    value = at_least(0.0, float)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def eval_config_from_args(args: argparse.Namespace, experiment: str, **overrides) -> EvalConfig:  # noqa: ANN003
    checkpoint = getattr(args, "checkpoint", None)
    try:
        options = yaml.safe_load(args.extractor_options) if args.extractor_options else {}
    except yaml.YAMLError:
        options = None
    if not isinstance(options, dict):
        raise UserError(f"--extractor-options {args.extractor_options!r}: expected a YAML/JSON mapping")
    values = dict(
        config_path=args.config, checkpoint=None if checkpoint == "random-init" else checkpoint, data=args.data,
        out_dir=args.out, split=None if args.split == "all" else args.split, max_videos=args.max_videos,
        domain=args.domain, keypoints=args.keypoints, embedding=args.embedding, use_mkr=args.mkr,
        extractor_options=options, batch_size=args.batch_size, num_workers=args.workers,
        cpus_per_worker=args.cpus_per_worker, device=args.device, endpoint=args.endpoint,
        tracking_uri=args.tracking_uri, experiment=args.experiment or experiment, run_name=args.run_name,
    )
    values.update(overrides)
    with user_input():
        return EvalConfig(**values)


def check_eval_inputs(cfg: EvalConfig, checkpoint_flag: str = "--checkpoint") -> None:
    """Before Ray starts or anything is written: the config, a checkpoint that fits it, clips in the shards, a
    writable --out and a reachable tracking URI; a UserError (or ConfigError, CheckpointError) names the flag."""
    import fomm
    from evaluation.reconstruction import load_model
    from preprocessing.shards import require_shards
    from services import storage

    checks.existing_file("--config", cfg.config_path, "a FOMM YAML")
    if cfg.checkpoint is not None and not storage.is_remote(cfg.checkpoint):
        checks.existing_file(checkpoint_flag, cfg.checkpoint, "a checkpoint file")
        load_model(cfg.config_path, cfg.checkpoint)  # the config loads and the checkpoint fits it
    else:
        fomm.load_config(cfg.config_path)
        if cfg.checkpoint is not None:
            storage.check_reachable(checkpoint_flag, cfg.checkpoint, cfg.endpoint)
    require_shards("--data", cfg.data, cfg.split, cfg.endpoint)
    checks.writable_storage("--out", cfg.out_dir, cfg.endpoint)
    checks.tracking_uri("--tracking-uri", cfg.tracking_uri)
    from evaluation.ray_jobs import select_clips  # last: it imports MLflow (seconds)

    with user_input("--data"):
        select_clips(cfg)

