"""Benchmark: the animation model's time per frame (vox-256 at 256²: kp detector + generator with the source
prepared once, relative motion) in each precision and memory layout, against this machine's 3×3-conv rate in the
same precision and layout, measured in the same run. Prints JSON.

    python benchmarks/bench_model.py [--batch 4] [--repeats 2] [--rounds 2] [--cases all] [--compile]

The cases run interleaved (every case in each round, its conv rate measured just before it), so a busy machine's
load drifts over all of them alike.
`fraction_of_conv_rate` is the achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode) over the rate of a
3×3 conv 256→256 at 64², batch 4, in the same precision and layout: the fraction of what the machine can do.
The onnx case (the exported graphs on ONNX Runtime, fp32) is compared with torch's fp32 contiguous conv rate.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from fomm.animator import Animator
from fomm.config.schema import FommConfig, load_config
from fomm.models import build_networks

ROOT = Path(__file__).resolve().parents[1]
CASES = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True), ("onnx", False))


def conv_rate(precision: str, channels_last: bool, repeats: int = 8) -> float:
    """FLOP/s of a 3×3 conv 256→256 at 64², batch 4 (the generator's bottleneck shape)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(memory_format=fmt).eval()
    x = torch.rand(4, 256, 64, 64).contiguous(memory_format=fmt)
    flops = 2 * 4 * 256 * 256 * 9 * 64 * 64
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        conv(x)
        start = time.perf_counter()
        for _ in range(repeats):
            conv(x)
    return flops * repeats / (time.perf_counter() - start)


def frame_step(animator: Animator, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
    """The Animator's inference path on frames already at the model's size."""
    return torch.cat([b.prediction for b in animator.animate(source, list(driving))])


def build(cfg: FommConfig, batch: int, precision: str, channels_last: bool = False) -> Animator:
    nets = build_networks(cfg.model_params, seed=0)
    det, gen = nets.kp_detector, nets.generator
    size = cfg.dataset_params.shape[0]
    return Animator(det, gen, frame_size=(size, size), crop="none", batch_size=batch, precision=precision,
                    channels_last=channels_last)


def flops_per_frame(cfg: FommConfig, batch: int) -> float:
    """FLOPs of one frame on the inference path (the same in every precision; counted in fp32)."""
    animator = build(cfg, batch, "fp32")
    size = cfg.dataset_params.shape[0]
    with torch.inference_mode():
        state = animator.encode_source(torch.rand(1, 3, size, size))
        with FlopCounterMode(display=False) as counter:
            frame_step(animator, state, torch.rand(batch, 3, size, size))
    return counter.get_total_flops() / batch


def build_case(cfg: FommConfig, precision: str, channels_last: bool, batch: int,
               compile_: bool) -> Animator:
    animator = build(cfg, batch, "fp32" if precision == "onnx" else precision, channels_last)
    if precision == "onnx":  # the same model exported, on ONNX Runtime (CPU, fp32; the export extra)
        from animate.onnx_engine import onnx_animator

        animator = onnx_animator(animator)
    if compile_ and precision != "onnx":
        animator.kp_detector = torch.compile(animator.kp_detector)
        animator.generator = torch.compile(animator.generator)
    return animator


def measure(cfg: FommConfig, cases: list[tuple[str, bool]], batch: int, repeats: int, rounds: int,
            compile_: bool, flops: float) -> list[dict]:
    """Every case in each round (its conv rate measured just before it), medians over the rounds."""
    size = cfg.dataset_params.shape[0]
    source, driving = torch.rand(1, 3, size, size), torch.rand(batch, 3, size, size)
    animators, states, warmup, times, rates = {}, {}, {}, {c: [] for c in cases}, {c: [] for c in cases}
    with torch.inference_mode():
        for case in cases:
            animators[case] = build_case(cfg, *case, batch, compile_)
            states[case] = animators[case].encode_source(source)
            start = time.perf_counter()
            frame_step(animators[case], states[case], driving)  # warm-up (oneDNN kernels; compilation)
            warmup[case] = time.perf_counter() - start
        for _ in range(rounds):
            for case in cases:
                precision, channels_last = case
                rates[case].append(conv_rate("fp32" if precision == "onnx" else precision, channels_last))
                start = time.perf_counter()
                for _ in range(repeats):
                    frame_step(animators[case], states[case], driving)
                times[case].append((time.perf_counter() - start) / (repeats * batch))
    rows = []
    for case in cases:
        per_frame, rate = statistics.median(times[case]), statistics.median(rates[case])
        rows.append({"precision": case[0], "channels_last": case[1], "ms_per_frame": round(1000 * per_frame, 1),
                     "frames_per_s": round(1 / per_frame, 2), "gflops_per_frame": round(flops / 1e9, 1),
                     "achieved_gflops_per_s": round(flops / per_frame / 1e9, 1),
                     "conv_gflops_per_s": round(rate / 1e9, 1),
                     "fraction_of_conv_rate": round(statistics.median(
                         [flops / t / r for t, r in zip(times[case], rates[case])]), 3),
                     "warmup_s": round(warmup[case], 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "vox-256.yaml"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="batches per case and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the cases")
    parser.add_argument("--compile", action="store_true", help="torch.compile the kp detector and generator")
    parser.add_argument("--cases", default="all", help="all (onnx where ONNX Runtime is installed), or e.g. "
                        "fp32,bf16-cl,onnx")
    args = parser.parse_args()
    cfg = load_config(args.config)
    wanted = [c for c in CASES if f"{c[0]}{'-cl' if c[1] else ''}" in args.cases.split(",")
              or (args.cases == "all" and (c[0] != "onnx" or importlib.util.find_spec("onnxruntime")))]
    flops = flops_per_frame(cfg, args.batch)
    rows = measure(cfg, wanted, args.batch, args.repeats, args.rounds, args.compile, flops)
    print(json.dumps({"benchmark": "model_forward", "config": Path(args.config).name,
                      "resolution": cfg.dataset_params.shape[0], "threads": torch.get_num_threads(),
                      "batch": args.batch, "compile": args.compile, "cpu": platform.processor() or platform.machine(),
                      "cases": rows}, indent=1))


if __name__ == "__main__":
    main()
