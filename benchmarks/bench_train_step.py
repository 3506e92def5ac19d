"""One training step (generator + kp detector + discriminator update) per precision and memory layout, in one
process without Ray: vox-256 at 256², batch 2 by default. Prints one JSON line per measured case, then a summary.

    python benchmarks/bench_train_step.py [--config configs/vox-256.yaml] [--batch 2] [--steps 3] [--rounds 1]
                                          [--cases fp32,fp32-cl,bf16,bf16-cl]

One training state is alive at a time: each round builds every case in turn (same seed), runs one warm-up step,
times `--steps` steps and prints that case's figures at once (flushed), so a slow machine shows progress and a
timeout keeps what was measured. Rounds interleave the cases, so a busy machine's load drifts over all of them
alike; `samples_per_s_vs_fp32` is the ratio to fp32 in contiguous memory (the original configs' behaviour before
`train_params.bf16` defaulted to auto). The batches are real frames (../shared/data), resized.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CASES = {"fp32": ("fp32", False), "fp32-cl": ("fp32", True), "bf16": ("bf16", False), "bf16-cl": ("bf16", True)}


def real_batch(size: int, batch: int, offset: int = 0) -> dict[str, torch.Tensor]:
    """Source and driving frames 2·batch apart from a real talking-head video, at size×size.  # B×3×H×W"""
    from fomm.animator import fit_frames
    from services.video_read import read_frames

    video = read_frames(DATA / "face_talk_a.mp4", offset + 40 + batch)
    x = fit_frames(torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255, (size, size))
    return {"source": x[offset:offset + batch].clone(), "driving": x[offset + 40:offset + 40 + batch].clone()}


def build(config: str, batch: int, channels_last: bool):  # noqa: ANN201 - fomm.train_step.TrainState
    from fomm.config.schema import load_config
    from fomm.train_step import build_train_state, to_channels_last
    from fomm.vgg import Vgg19

    cfg = load_config(config)
    torch.manual_seed(0)
    state = build_train_state(cfg.model_params, cfg.train_params, vgg=Vgg19())
    if channels_last:
        to_channels_last(state)
    return state, cfg.dataset_params.shape[0]


def measure(config: str, batch: dict, precision: str, channels_last: bool, steps: int) -> list[float]:
    """Seconds of each of `steps` training steps after one warm-up step (oneDNN kernels, allocator)."""
    from fomm.train_step import train_step

    state, _ = build(config, batch["source"].shape[0], channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    inputs = {k: v.contiguous(memory_format=layout) for k, v in batch.items()}
    dtype = torch.bfloat16 if precision == "bf16" else None
    train_step(state, inputs, autocast_dtype=dtype)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step(state, inputs, autocast_dtype=dtype)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs" / "vox-256.yaml"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps per case and round")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    args = p.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown or not cases or args.steps < 1 or args.rounds < 1:
        p.error(f"--cases: unknown {', '.join(unknown)} (known: {', '.join(CASES)})" if unknown or not cases
                else "--steps and --rounds must be at least 1")
    from fomm.config.schema import load_config

    size = load_config(args.config).dataset_params.shape[0]
    batch = real_batch(size, args.batch)
    times: dict[str, list[float]] = {case: [] for case in cases}
    for r in range(args.rounds):
        for case in cases:
            measured = measure(args.config, batch, *CASES[case], args.steps)
            times[case] += measured
            print(json.dumps({"round": r, "case": case, "step_s": [round(t, 3) for t in measured]}), flush=True)
    base = statistics.median(times["fp32"]) if "fp32" in times else None
    rows = [{"case": case, "precision": CASES[case][0], "channels_last": CASES[case][1],
             "step_s": round(statistics.median(t), 3), "samples_per_s": round(args.batch / statistics.median(t), 3),
             **({"samples_per_s_vs_fp32": round(base / statistics.median(t), 2)} if base else {})}
            for case, t in times.items()]
    print(json.dumps({"benchmark": "train_step", "config": Path(args.config).name, "batch": args.batch,
                      "resolution": size, "threads": torch.get_num_threads(),
                      "cpu": platform.processor() or platform.machine(), "steps_per_case": args.steps * args.rounds,
                      "cases": rows}, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
