"""Does bf16 training follow the fp32 loss curve? The same steps (same initial weights, batches of real frames and
random warps) in fp32 and in bf16 autocast, for tiny-64 and demo-64. Prints JSON.

    python benchmarks/bench_precision_curve.py [--steps 200] [--configs tiny-64,demo-64]

`final_rel_diff`: relative difference of the mean total loss over the last `--window` steps; `curve_max_rel_diff`:
the largest relative difference between the two curves' `--window`-step moving averages after the first window.
The goal: both within 2%. Batches: random pairs of frames of the real talking-head videos in ../shared/data, at
the config's size, drawn once with a fixed seed and fed to both runs; each run re-seeds torch identically, so
the warps of the equivariance losses are the same too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
VIDEOS = ("face_talk_a.mp4", "face_talk_b.mp4", "face_talk_c.mp4", "face_talk_d.mp4")


def frame_batches(size: int, batch: int, steps: int, frames: int = 120, seed: int = 0) -> list[dict]:
    """`steps` batches of (source, driving) frame pairs from the same real video.  # B×3×size×size"""
    from fomm.animator import fit_frames
    from services.video_read import read_frames

    videos = [fit_frames(torch.from_numpy(read_frames(DATA / v, frames)).permute(0, 3, 1, 2).float() / 255,
                         (size, size)) for v in VIDEOS]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        picks = [(videos[rng.integers(len(videos))], *rng.choice(frames, 2, replace=False)) for _ in range(batch)]
        out.append({"source": torch.stack([v[i] for v, i, _ in picks]),
                    "driving": torch.stack([v[j] for v, _, j in picks])})
    return out


def run(config: str, precision: str, batches: list[dict]) -> tuple[list[float], float]:
    """Total loss of each step, and seconds per step."""
    from fomm.config.schema import load_config
    from fomm.precision import use_channels_last
    from fomm.train_step import build_train_state, to_channels_last, train_step
    from fomm.vgg import Vgg19

    cfg = load_config(config)
    torch.manual_seed(0)
    state = build_train_state(cfg.model_params, cfg.train_params, vgg=Vgg19())
    dtype = torch.bfloat16 if precision == "bf16" else None
    channels_last = use_channels_last(cfg.train_params.channels_last, dtype)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        to_channels_last(state)
    losses = []
    start = time.perf_counter()
    for batch in batches:
        values, _ = train_step(state, {k: v.contiguous(memory_format=fmt) for k, v in batch.items()},
                               autocast_dtype=dtype)
        losses.append(values["total"])
    return losses, (time.perf_counter() - start) / len(batches)


def moving_average(x: list[float], window: int) -> np.ndarray:
    return np.convolve(np.asarray(x), np.ones(window) / window, mode="valid")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--configs", default="tiny-64,demo-64")
    args = p.parse_args()
    from fomm.config.schema import load_config

    results = []
    for name in args.configs.split(","):
        config = str(REPO / "configs" / f"{name}.yaml")
        cfg = load_config(config)
        batches = frame_batches(cfg.dataset_params.shape[0], cfg.train_params.batch_size, args.steps)
        (fp32, fp32_s), (bf16, bf16_s) = run(config, "fp32", batches), run(config, "bf16", batches)
        a, b = moving_average(fp32, args.window), moving_average(bf16, args.window)
        final32, final16 = float(np.mean(fp32[-args.window:])), float(np.mean(bf16[-args.window:]))
        results.append({
            "config": name, "steps": args.steps, "batch_size": cfg.train_params.batch_size,
            "channels_last": cfg.train_params.channels_last,
            "first_loss": {"fp32": round(fp32[0], 4), "bf16": round(bf16[0], 4)},
            "final_loss": {"fp32": round(final32, 4), "bf16": round(final16, 4)},
            "final_rel_diff": round(abs(final16 - final32) / final32, 4),
            "curve_max_rel_diff": round(float(np.max(np.abs(b - a) / a)), 4),
            "step_s": {"fp32": round(fp32_s, 3), "bf16": round(bf16_s, 3)},
        })
    print(json.dumps({"benchmark": "precision_curve", "window": args.window, "threads": torch.get_num_threads(),
                      "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
