"""Command-line options shared by pipelines/evaluate.py and pipelines/benchmark.py → EvalConfig."""

from __future__ import annotations

import argparse

import yaml

from evaluation.extractors import EMBEDDING_BACKENDS, KEYPOINT_BACKENDS
from evaluation.runner import DOMAINS, EvalConfig


def add_eval_arguments(p: argparse.ArgumentParser, checkpoint_required: bool = True) -> None:
    p.add_argument("--config", required=True, help="FOMM model config YAML (e.g. configs/vox-256.yaml)")
    if checkpoint_required:
        p.add_argument("--checkpoint", required=True,
                       help="original-format checkpoint (local or s3://); 'random-init' = untrained smoke run")
    p.add_argument("--data", required=True, help="clip shards: dataset root, shard folder or file (local or s3://)")
    p.add_argument("--split", default="test", help="shard split to evaluate; 'all' for every clip (default test)")
    p.add_argument("--max-videos", type=int, default=None, help="evaluate only the first N clips")
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
    p.add_argument("--workers", type=int, default=2, help="Ray Data actors (0 = no Ray, in-process)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16, help="frames per generator call")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default $RAY_ADDRESS or local)")
    p.add_argument("--endpoint", default=None, help="S3 endpoint override for s3:// paths")


def eval_config_from_args(args: argparse.Namespace, experiment: str, **overrides) -> EvalConfig:  # noqa: ANN003
    checkpoint = getattr(args, "checkpoint", None)
    options = yaml.safe_load(args.extractor_options) if args.extractor_options else {}
    if not isinstance(options, dict):
        raise SystemExit(f"--extractor-options: expected a mapping, got {args.extractor_options!r}")
    values = dict(
        config_path=args.config, checkpoint=None if checkpoint == "random-init" else checkpoint, data=args.data,
        out_dir=args.out, split=None if args.split == "all" else args.split, max_videos=args.max_videos,
        domain=args.domain, keypoints=args.keypoints, embedding=args.embedding, use_mkr=args.mkr,
        extractor_options=options, batch_size=args.batch_size, num_workers=args.workers,
        cpus_per_worker=args.cpus_per_worker, device=args.device, endpoint=args.endpoint,
        tracking_uri=args.tracking_uri, experiment=args.experiment or experiment, run_name=args.run_name,
    )
    values.update(overrides)
    return EvalConfig(**values)

