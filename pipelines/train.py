"""Train FOMM on Ray Train: `python pipelines/train.py --config YAML --data SHARDS --storage DIR [...]`.

Runs on one laptop (a local Ray is started) or on a cluster (RAY_ADDRESS, `ray job submit`) unchanged;
prints the checkpoint path and the MLflow run id at the end; `--model-name NAME` registers the best checkpoint
as a new version of that MLflow model (which `pipelines/benchmark.py --model-name NAME` evaluates).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.cli import ArgumentParser, UserError, at_least, run_cli, user_input  # noqa: E402
from training.job import TrainJob, check_inputs  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", required=True, help="FOMM YAML (the original configs load unchanged)")
    p.add_argument("--data", required=True, help="clip shards: dataset root, folder of .parquet or one file (local or s3://)")
    p.add_argument("--storage", required=True, help="checkpoints and run state (local or s3://)")
    p.add_argument("--name", default=None, help="run folder under --storage (default: the config's stem)")
    p.add_argument("--workers", type=at_least(1), default=1, help="DDP workers")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="0 trains on CPU with gloo; >0 on GPU with NCCL")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--max-steps", type=at_least(1), default=None, help="stop after this many optimiser steps (smoke tests)")
    p.add_argument("--epochs", type=at_least(1), default=None, help="override train_params.num_epochs")
    p.add_argument("--max-minutes", type=at_least(0.01, float), default=None, help="stop training this long after the start")
    p.add_argument("--lr-schedule", choices=("epochs", "budget"), default="epochs",
                   help="decay the learning rates at the config's epoch_milestones (epochs), or at the same "
                        "fractions of --max-steps / --max-minutes, training until that budget ends (budget)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlruns)")
    p.add_argument("--experiment", default="fomm-train", help="MLflow experiment")
    p.add_argument("--model-name", default=None,
                   help="register the best checkpoint as a new version of this MLflow model (default: not registered)")
    p.add_argument("--resume", action="store_true", help="continue the run in --storage/--name from its latest checkpoint")
    p.add_argument("--keep-checkpoints", type=at_least(1), default=3, help="keep the best N checkpoints by val_l1 (and the latest)")
    p.add_argument("--max-failures", type=at_least(0), default=3, help="worker-group restarts from the latest checkpoint")
    p.add_argument("--val-clips", type=at_least(0), default=8,
                   help="held-out clips reconstructed after each epoch (0: no validation)")
    p.add_argument("--val-split", default="test")
    p.add_argument("--log-images-every", type=at_least(0), default=100, help="steps between training grids in MLflow (0: never)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a config value, e.g. train_params.loss_weights.perceptual=[10,10,10,0,0]")
    return p.parse_args(argv)


def overrides_from(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        try:
            node[leaf] = json.loads(value)
        except json.JSONDecodeError:
            node[leaf] = value
    return out


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv, "train")


def _main(argv: list[str]) -> int:
    a = parse_args(argv)
    with user_input():
        job = TrainJob(
        config=a.config, data=a.data, storage=a.storage, name=a.name, workers=a.workers,
        gpus_per_worker=a.gpus_per_worker, cpus_per_worker=a.cpus_per_worker, max_steps=a.max_steps,
        max_minutes=a.max_minutes, num_epochs=a.epochs, lr_schedule=a.lr_schedule, tracking_uri=a.tracking_uri,
        experiment=a.experiment, resume=a.resume, keep_checkpoints=a.keep_checkpoints, max_failures=a.max_failures,
        num_val_clips=a.val_clips, val_split=a.val_split, log_images_every=a.log_images_every,
        overrides=overrides_from(a.set))
    check_inputs(job)
    from training.registry import register_best
    from training.trainer import fit

    result = fit(job)
    version = register_best(job, result, a.model_name) if a.model_name else None
    if a.resume:
        print(f"resumed from: {result.resumed_from or 'step 0 (no registered checkpoint)'}")
    print(f"checkpoint: {result.checkpoint}")
    print(f"best checkpoint: {result.best_checkpoint}")
    print(f"val_l1: {result.metrics.get('val_l1')}")
    print(f"mlflow run id: {result.mlflow_run_id}")
    if version:
        print(f"registered model: {version['name']} version {version['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
