"""Training throughput on Ray Train: samples/s per worker at 256×256 (vox-256, batch 2) and at the demo size, and
the share of step time spent waiting for data. Prints JSON.

    python benchmarks/bench_train.py [--steps 12] [--warmup 3] [--skip-256] [--out bench_output/bench_train.json]

Data: the built-in synthetic set, written as clip shards (preprocessing.synthetic.write_synthetic_shards).
Figures come from the per-step MLflow metrics that rank 0 logs (data_wait_s, compute_s), after `--warmup` steps
(the first steps include the Ray Data pipeline starting up).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.atomic import atomic_open  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def synthetic_shards(root: Path, num_videos: int, size: int, frames: int) -> str:
    """The synthetic set as clip shards (every 4th clip to 'test', the rest to 'train')."""
    from preprocessing.synthetic import write_synthetic_shards

    return str(write_synthetic_shards(root, num_videos=num_videos, size=size, num_frames=frames, test_every=4))


def write_report(report: dict, path: str) -> None:
    """Print the benchmark's JSON and keep it at `path` (written whole, then renamed)."""
    text = json.dumps(report, indent=1)
    print(text)
    with atomic_open(path, "w") as f:
        f.write(text)


def step_figures(tracking_uri: str, run_id: str, warmup: int, per_worker_batch: int) -> dict:
    """Figures from the per-step metrics of rank 0 (steps after `warmup`).

    `data_wait_fraction` counts every measured step, epoch starts included (each restarts the data stream);
    `epoch_start_wait_s` is the mean wait of the slowest step in each epoch crossed.
    """
    from services.tracking.queries import metric_history

    wait, compute, epoch = (dict(metric_history(tracking_uri, run_id, key))
                            for key in ("data_wait_s", "compute_s", "epoch"))
    steps = sorted(s for s in wait if s > warmup and s in compute)
    if not steps:
        raise RuntimeError(f"run {run_id}: no steps after the {warmup} warm-up steps")
    total = sum(wait[s] + compute[s] for s in steps)
    by_epoch: dict[float, list[float]] = {}
    for s in steps:
        by_epoch.setdefault(epoch.get(s, 0.0), []).append(wait[s])
    crossed = [max(waits) for e, waits in by_epoch.items() if e != epoch.get(steps[0], 0.0)]
    return {"steps_measured": len(steps), "step_time_s": total / len(steps),
            "samples_per_s_per_worker": per_worker_batch * len(steps) / total,
            "data_wait_fraction": sum(wait[s] for s in steps) / total,
            "epochs_crossed": len(crossed),
            "epoch_start_wait_s": sum(crossed) / len(crossed) if crossed else None}


def measure(name: str, config: str, data: str, workers: int, steps: int, warmup: int, overrides: dict,
            work: Path) -> dict:
    from training.job import TrainJob
    from training.trainer import fit

    uri = f"sqlite:///{work / 'mlflow.db'}"
    job = TrainJob(config=config, data=data, storage=str(work / "storage"), name=name, workers=workers,
                   max_steps=steps, tracking_uri=uri, experiment="bench-train", num_val_clips=0,
                   log_images_every=0, validate_at_start=False, overrides=overrides)
    cfg = job.load_config()
    start = time.time()
    result = fit(job)
    figures = step_figures(uri, result.mlflow_run_id, warmup, cfg.train_params.batch_size // workers)
    return {"case": name, "config": Path(config).name, "frame_shape": list(cfg.dataset_params.shape[:2]),
            "workers": workers, "batch_per_worker": cfg.train_params.batch_size // workers,
            "job_wall_s": round(time.time() - start, 1),
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12, help="optimiser steps per case")
    p.add_argument("--warmup", type=int, default=3, help="first steps left out of the figures")
    p.add_argument("--demo-workers", type=int, default=2)
    p.add_argument("--skip-256", action="store_true", help="only the demo size (256×256 on CPU takes minutes)")
    p.add_argument("--demo-num-repeats", type=int, default=None,
                   help="shorter demo epochs (e.g. 4: 18 steps) so that the figures include epoch starts")
    p.add_argument("--out", default="bench_output/bench_train.json")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")

    from training.job import TrainJob
    from training.trainer import ensure_training_ray

    ensure_training_ray(TrainJob(config="-", data="-", storage="-", workers=max(2, args.demo_workers)))
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    results = []
    demo_data = synthetic_shards(work / "synthetic-64", num_videos=12, size=64, frames=48)
    results.append(measure("demo-64", str(REPO / "configs" / "demo-64.yaml"), demo_data, args.demo_workers,
                           args.steps, args.warmup,
                           {"train_params": {"num_repeats": args.demo_num_repeats}} if args.demo_num_repeats else {},
                           work / "demo"))
    if not args.skip_256:
        vox_data = synthetic_shards(work / "synthetic-256", num_videos=4, size=256, frames=24)
        results.append(measure("vox-256-batch2", str(REPO / "configs" / "vox-256.yaml"), vox_data, 1,
                               max(args.warmup + 3, args.steps // 2), args.warmup,
                               {"train_params": {"batch_size": 2, "num_repeats": 4}}, work / "vox"))
    import torch

    report = {"benchmark": "bench_train", "command": shlex.join([sys.executable, *sys.argv]),
              "device": "cpu", "torch_threads_per_worker": 1, "cpus": os.cpu_count(),
              "torch": torch.__version__, "results": results}
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
