"""Does training learn? The demo config on the synthetic set at 64×64 on Ray Train, for at most N minutes;
then held-out reconstruction L1 against the copy-the-source baseline (goal: at least 30% below). Prints JSON.

    python benchmarks/bench_learning.py [--minutes 15] [--workers 1] [--cpus-per-worker 2] [--videos 24]
        [--out bench_output/bench_learning.json]

One worker with both cores by default: on a 2-core machine, 2 gloo DDP workers spend more than half of each step
in synchronised batch norm's collectives (see bench_ddp.py), so one worker takes ~2× more steps in the budget.

The time budget covers the whole job (Ray start-up, data, training); the last validation and checkpoint follow.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_train import synthetic_shards, write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.30  # held-out L1 at least this fraction below the copy-the-source baseline


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--cpus-per-worker", type=float, default=None,
                   help="CPUs (= torch threads) per worker; default: all cores shared among the workers")
    p.add_argument("--videos", type=int, default=24, help="synthetic videos (a quarter held out)")
    p.add_argument("--config", default=str(REPO / "configs" / "demo-64.yaml"))
    p.add_argument("--lr-schedule", choices=("epochs", "budget"), default="budget",
                   help="budget (default): the config's decays at the same fractions of the time budget, so they "
                        "happen whatever the machine's speed; epochs: at the epoch milestones")
    p.add_argument("--work", default=None, help="folder for data, checkpoints and MLflow (default: a temp dir)")
    p.add_argument("--out", default="bench_output/bench_learning.json")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")

    from services.tracking.queries import metric_history
    from training.job import TrainJob
    from training.trainer import ensure_training_ray, fit

    cpus_per_worker = args.cpus_per_worker or max(1, (os.cpu_count() or 1) // args.workers)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_learning_"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    job = TrainJob(config=args.config, data="", storage=str(work / "storage"), name=f"learn-{int(time.time())}",
                   workers=args.workers, cpus_per_worker=cpus_per_worker, max_minutes=args.minutes,
                   lr_schedule=args.lr_schedule, tracking_uri=uri, experiment="bench-learning",
                   num_val_clips=64, val_frames=12, log_images_every=500)
    start = time.time()
    ensure_training_ray(job)
    data = synthetic_shards(work / "synthetic-64", num_videos=args.videos, size=64, frames=48)
    job = dataclasses.replace(job, data=data, max_minutes=args.minutes - (time.time() - start) / 60)  # data prep counts too
    result = fit(job)
    wall = time.time() - start

    history = metric_history(uri, result.mlflow_run_id, "val_l1")  # [(step, value)] in step order
    m = result.metrics
    reduction = 1.0 - m["val_l1"] / m["val_l1_copy_source"]
    report = {
        "benchmark": "bench_learning", "command": shlex.join([sys.executable, *sys.argv]),
        "config": Path(args.config).name, "lr_schedule": args.lr_schedule, "workers": args.workers,
        "cpus_per_worker": cpus_per_worker, "minutes_budget": args.minutes,
        "wall_s": round(wall, 1), "steps": int(m["step"]), "epochs": int(m["epoch"]),
        "val_l1_untrained": next((value for step, value in history if step == 0), None),
        "val_l1": m["val_l1"], "val_l1_copy_source": m["val_l1_copy_source"],
        "reduction_vs_copy_source": round(reduction, 4), "goal": GOAL, "goal_met": reduction >= GOAL,
        "val_l1_curve": [(step, round(value, 5)) for step, value in history],
        "checkpoint": result.checkpoint, "best_checkpoint": result.best_checkpoint,
        "mlflow": {"tracking_uri": uri, "run_id": result.mlflow_run_id},
    }
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
