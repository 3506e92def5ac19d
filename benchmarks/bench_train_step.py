"""One training step (generator + kp detector + discriminator update) per precision and memory layout, in one
process without Ray: vox-256 at 256², batch 2 by default. Prints JSON.

    python benchmarks/bench_train_step.py [--config configs/vox-256.yaml] [--batch 2] [--steps 3] [--rounds 2]

The cases are interleaved (each round runs every case for `--steps` steps), so a busy machine's load drifts over
all of them alike; `samples_per_s_vs_fp32` is the ratio to fp32 in contiguous memory, the original configs'
behaviour before `train_params.bf16` defaulted to auto. The batches are real frames (../shared/data), resized.
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
CASES = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))


def real_batch(size: int, batch: int, offset: int = 0) -> dict[str, torch.Tensor]:
    """Source and driving frames 2·batch apart from a real talking-head video, at size×size.  # B×3×H×W"""
    from fomm.animator import fit_frames
    from services.video_read import read_frames

    video = read_frames(DATA / "face_talk_a.mp4", offset + 40 + batch)
    x = fit_frames(torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255, (size, size))
    return {"source": x[offset:offset + batch].clone(), "driving": x[offset + 40:offset + 40 + batch].clone()}


def build(config: str, batch: int, channels_last: bool):  # noqa: ANN201 - fomm.training.TrainState
    from fomm.config import load_config
    from fomm.training import build_train_state
    from fomm.vgg import Vgg19

    cfg = load_config(config)
    torch.manual_seed(0)
    state = build_train_state(cfg.model_params, cfg.train_params, vgg=Vgg19())
    if channels_last:
        for module in (state.kp_detector, state.generator, state.discriminator):
            module.to(memory_format=torch.channels_last)
    return state, cfg.dataset_params.shape[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs" / "vox-256.yaml"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps per case and round")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    from fomm.training import train_step

    states = {case: build(args.config, args.batch, case[1]) for case in CASES}
    size = next(iter(states.values()))[1]
    batch = real_batch(size, args.batch)
    inputs = {case: {k: v.contiguous(memory_format=torch.channels_last if case[1] else torch.contiguous_format)
                     for k, v in batch.items()} for case in CASES}
    times: dict = {case: [] for case in CASES}
    for case, (state, _) in states.items():  # warm-up step (oneDNN kernels, allocator)
        train_step(state, inputs[case], autocast_dtype=torch.bfloat16 if case[0] == "bf16" else None)
    for _ in range(args.rounds):
        for case, (state, _) in states.items():
            for _ in range(args.steps):
                start = time.perf_counter()
                train_step(state, inputs[case], autocast_dtype=torch.bfloat16 if case[0] == "bf16" else None)
                times[case].append(time.perf_counter() - start)
    base = statistics.median(times[("fp32", False)])
    rows = [{"precision": prec, "channels_last": cl, "step_s": round(statistics.median(t), 3),
             "samples_per_s": round(args.batch / statistics.median(t), 3),
             "samples_per_s_vs_fp32": round(base / statistics.median(t), 2)}
            for (prec, cl), t in times.items()]
    print(json.dumps({"benchmark": "train_step", "config": Path(args.config).name, "batch": args.batch,
                      "resolution": size, "threads": torch.get_num_threads(),
                      "cpu": platform.processor() or platform.machine(), "steps_per_case": len(times[CASES[0]]),
                      "cases": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
