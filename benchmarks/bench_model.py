"""Benchmark: kp detector + generator time per frame at 256×256 (vox-256), FLOPs per frame, and the ratio of
achieved FLOP/s to this machine's measured fp32 matmul FLOP/s. Prints JSON."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import fomm

ROOT = Path(__file__).resolve().parents[1]


def matmul_flops_per_s(n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(ROOT / "configs" / "vox-256.yaml"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = fomm.load_config(args.config)
    size = cfg.dataset_params.shape[0]
    det = fomm.KPDetector.from_config(cfg.model).eval()
    gen = fomm.OcclusionAwareGenerator.from_config(cfg.model).eval()
    src = torch.rand(1, 3, size, size)
    drv = torch.rand(args.batch, 3, size, size)
    with torch.inference_mode():
        kp_s = det(src)
        feats = gen.encode(src).expand(args.batch, -1, -1, -1)
        kp_s_b = {k: v.expand(args.batch, *v.shape[1:]) for k, v in kp_s.items()}
        src_b = src.expand(args.batch, -1, -1, -1)

        def frame_step():
            kp_d = det(drv)
            return gen(src_b, kp_source=kp_s_b, kp_driving=kp_d, source_features=feats)["prediction"]

        with FlopCounterMode(display=False) as counter:
            frame_step()
        flops_per_frame = counter.get_total_flops() / args.batch
        frame_step()  # warm-up
        start = time.perf_counter()
        for _ in range(args.repeats):
            frame_step()
        per_frame = (time.perf_counter() - start) / (args.repeats * args.batch)
    peak = matmul_flops_per_s()
    print(json.dumps({
        "benchmark": "model_forward", "config": Path(args.config).name, "resolution": size,
        "threads": torch.get_num_threads(), "batch": args.batch,
        "seconds_per_frame": round(per_frame, 4), "frames_per_s": round(1 / per_frame, 3),
        "gflops_per_frame": round(flops_per_frame / 1e9, 2),
        "achieved_gflops_per_s": round(flops_per_frame / per_frame / 1e9, 1),
        "matmul_gflops_per_s": round(peak / 1e9, 1),
        "fraction_of_matmul_peak": round(flops_per_frame / per_frame / peak, 3),
    }))


if __name__ == "__main__":
    main()
