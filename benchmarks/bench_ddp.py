"""What CPU DDP costs: demo-64 train-step time of two gloo workers (plain, DDP, DDP + synchronised batch norm)
against the same two processes training alone, and gloo's latency for one small all-reduce. Prints JSON.

    python benchmarks/bench_ddp.py [--steps 10] [--config configs/demo-64.yaml] [--out bench_output/bench_ddp.json]

Every case runs two processes of one torch thread each with the per-worker batch (global batch / 2), so the
machine is equally busy in all of them; only the collectives differ. Synchronised batch norm adds two
collectives per batch-norm layer and step (29 layers in demo-64: the keypoint detector runs three times).
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from benchmarks.bench_train import write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CASES = ("alone", "ddp", "ddp+syncbn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, case: str, config: str, steps: int, port: int, results: dict) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from fomm.config.schema import load_config
    from fomm.train_step import build_train_state, train_step
    from training.sync_bn import convert_sync_batchnorm

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    cfg = load_config(config)
    torch.manual_seed(0)
    state = build_train_state(cfg.model_params, cfg.train_params)
    model = state.generator_full
    if case != "alone":
        if case == "ddp+syncbn":
            model = convert_sync_batchnorm(model, torch.device("cpu"))
        model = DistributedDataParallel(model, find_unused_parameters=False)
    per_worker = max(1, cfg.train_params.batch_size // 2)
    size = cfg.dataset_params.shape[:2]
    batch = {k: torch.rand(per_worker, 3, *size) for k in ("source", "driving")}
    for _ in range(2):  # warm-up
        train_step(state, batch, model)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        train_step(state, batch, model)
    elapsed = time.perf_counter() - start
    if rank == 0:
        results[case] = elapsed / steps
        x = torch.rand(65, dtype=torch.float64)  # Σx, Σx², n of a 32-channel batch-norm layer
        for _ in range(20):
            dist.all_reduce(x)
        start = time.perf_counter()
        for _ in range(200):
            dist.all_reduce(x)
        results["allreduce_65_f64_us"] = (time.perf_counter() - start) / 200 * 1e6
    else:
        for _ in range(220):
            dist.all_reduce(torch.rand(65, dtype=torch.float64))
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--config", default=str(REPO / "configs" / "demo-64.yaml"))
    p.add_argument("--out", default="bench_output/bench_ddp.json")
    args = p.parse_args(argv)
    with mp.Manager() as manager:
        results = manager.dict()
        for case in CASES:
            mp.spawn(_worker, args=(case, args.config, args.steps, _free_port(), results), nprocs=2)
        figures = dict(results)
    alone = figures["alone"]
    report = {
        "benchmark": "bench_ddp", "command": shlex.join([sys.executable, *sys.argv]), "cpus": os.cpu_count(),
        "torch": torch.__version__, "config": Path(args.config).name, "steps": args.steps,
        "step_time_s": {case: round(figures[case], 4) for case in CASES},
        "slowdown_vs_alone": {case: round(figures[case] / alone, 2) for case in CASES},
        "gloo_allreduce_65_f64_us": round(figures["allreduce_65_f64_us"], 1),
    }
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
