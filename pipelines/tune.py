"""Sweep FOMM loss weights / learning rates with Ray Tune (ASHA on val_l1); prints the best config's path.

`python pipelines/tune.py --config YAML --space configs/sweeps/loss-weights.yaml --data SHARDS --storage DIR`
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services import checks  # noqa: E402
from services.cli import ArgumentParser, UserError, at_least, run_cli, user_input  # noqa: E402
from training.job import TrainJob, check_inputs  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", required=True, help="base FOMM YAML")
    p.add_argument("--space", default="configs/sweeps/loss-weights.yaml", help="search space YAML")
    p.add_argument("--data", required=True, help="clip shards (local or s3://)")
    p.add_argument("--storage", required=True, help="local/shared folder for the sweep and its trials")
    p.add_argument("--name", default=None, help="sweep name (default: sweep-<config stem>)")
    p.add_argument("--num-samples", type=at_least(1), default=None, help="trials (default: the space file's)")
    p.add_argument("--max-concurrent", type=at_least(1), default=1, help="trials at once")
    p.add_argument("--workers", type=at_least(1), default=1, help="DDP workers per trial")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--max-steps", type=at_least(1), default=None, help="optimiser steps per trial")
    p.add_argument("--epochs", type=at_least(1), default=None, help="override train_params.num_epochs")
    p.add_argument("--grace-period", type=at_least(1), default=1, help="reports before ASHA may stop a trial")
    p.add_argument("--val-clips", type=at_least(0), default=4, help="held-out clips per validation (0: none)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    p.add_argument("--experiment", default="fomm-tune", help="MLflow experiment")
    p.add_argument("--out", default=None, help="best config YAML (default: <storage>/<name>/best.yaml)")
    p.add_argument("--resume", action="store_true", help="restore an interrupted sweep (Tuner.restore)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv, "tune")


def _main(argv: list[str]) -> int:
    a = parse_args(argv)
    with user_input():
        base = TrainJob(config=a.config, data=a.data, storage=a.storage, name=a.name, workers=a.workers,
                        gpus_per_worker=a.gpus_per_worker, max_steps=a.max_steps, num_epochs=a.epochs,
                        tracking_uri=a.tracking_uri, experiment=a.experiment, num_val_clips=a.val_clips,
                        log_images_every=0)
    check_inputs(base)
    if base.storage.startswith("s3://"):
        raise UserError(f"--storage {base.storage}: a sweep keeps Ray Tune's state on a local or shared path")
    checks.existing_file("--space", a.space, "a search space YAML")
    from tuning.spaces import SearchSpace  # imports Ray Tune (seconds): after the cheap checks

    space = SearchSpace.from_yaml(a.space)  # a SpaceError names the file and the key
    space.check_against(base.load_config())
    from tuning.sweep import SweepJob, run_sweep

    with user_input():
        sweep = SweepJob(base=base, space=space, num_samples=a.num_samples, max_concurrent=a.max_concurrent,
                         grace_period=a.grace_period, resume=a.resume, out=a.out)
    result = run_sweep(sweep)
    print(f"trials: {result.num_trials}")
    print(f"best {sweep.space.metric}: {result.best_metrics.get(sweep.space.metric)}")
    print(f"best sample: {result.best_sample}")
    print(f"best config: {result.best_config}")
    print(f"mlflow parent run id: {result.parent_run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
