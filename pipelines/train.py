"""Train FOMM on Ray Train: `python pipelines/train.py --config YAML --data SHARDS --storage DIR [...]`.

Runs on one laptop (a local Ray is started) or on a cluster (RAY_ADDRESS, `ray job submit`) unchanged;
prints the checkpoint path and the MLflow run id at the end; `--model-name NAME` registers the best checkpoint
as a new version of that MLflow model (which `pipelines/benchmark.py --model-name NAME` evaluates).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fomm.config import parse_assignments  # noqa: E402
from services.cli import ArgumentParser, field_flags, field_values, report, run_cli, user_input  # noqa: E402
from training.job import TrainJob, add_train_flags, check_inputs  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_train_flags(p)
    job = field_flags(p, TrainJob)
    for name in ("cpus_per_worker", "max_minutes", "lr_schedule", "keep_checkpoints", "max_failures", "val_split",
                 "log_images_every"):
        job(name)
    job("resume", action="store_true")
    p.add_argument("--model-name", default=None,
                   help="register the best checkpoint as a new version of this MLflow model (default: not registered)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a config value, e.g. train_params.loss_weights.perceptual=[10,10,10,0,0]")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv, "train")


def _main(argv: list[str]) -> int:
    a = parse_args(argv)
    with user_input():
        job = TrainJob(**field_values(TrainJob, a, overrides=parse_assignments(a.set)))
    check_inputs(job)
    from training.registry import register_best
    from training.trainer import fit

    result = fit(job)
    version = register_best(job, result, a.model_name) if a.model_name else None
    if a.resume:
        print(f"resumed from: {result.resumed_from or 'step 0 (no registered checkpoint)'}")
    registered = {"registered model": f"{version['name']} version {version['version']}"} if version else {}
    return report({"checkpoint": result.checkpoint, "best checkpoint": result.best_checkpoint,
                   "val_l1": result.metrics.get("val_l1"), "mlflow run id": result.mlflow_run_id, **registered})


if __name__ == "__main__":
    sys.exit(main())
