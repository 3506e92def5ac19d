"""The GPU path without Ray: animation frames/s at 256² (vox-256, batches of 32–128, bf16 and fp32), vox-256
train-step throughput (fp32, bf16 autocast, bf16 + channels_last, optionally + torch.compile) with peak memory,
torch's SyncBatchNorm on CUDA against plain batch norm, and how far demo-64 learns in a few GPU minutes. JSON.

    python benchmarks/bench_gpu.py render --out .devdata/synth64.npz      # here: the synthetic set, as arrays
    python benchmarks/bench_gpu.py run --data .devdata/synth64.npz [--learn-seconds 360] [--out bench_gpu.json]
    python benchmarks/bench_gpu.py run --learn-seconds 0 --batch 20 64 --animate-batches 32 64 128 --compile

`run` needs only torch, numpy and PyYAML (no Ray, PyAV or MLflow), so it runs on a bare GPU machine with the
arrays `render` wrote. The learning part follows the CPU learning benchmark's protocol on the same videos: random
frame pairs of the 18 training videos with the config's augmentation, held-out reconstruction L1 of 6 test videos
(source = their first frame) against copying the source.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from services.atomic import atomic_open, atomic_path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".devdata" / "synth64.npz"


def render(out: Path, videos: int = 24, size: int = 64, frames: int = 48, identities: int = 4) -> None:
    """The synthetic videos as one uint8 array V×T×H×W×3, the last quarter of each identity held out."""
    from preprocessing.synthetic import make_identity, render_video

    ids = [make_identity(np.random.default_rng([0, 1, i]), i / identities) for i in range(identities)]
    clips = np.stack([render_video(ids[v % identities], np.random.default_rng([0, 2, v]), size, frames, 25.0)
                      for v in range(videos)])
    test = np.array([v >= videos - videos // 4 for v in range(videos)])
    with atomic_path(out) as tmp:
        np.savez_compressed(tmp, clips=clips, test=test)
    print(f"{out}: {clips.shape}, {int(test.sum())} held out")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def animate_throughput(device: torch.device, config: str, batches: list[int], repeats: int = 5) -> list[dict]:
    """Frames/s of the Animator's inference path (source prepared once) at each batch size, bf16 and fp32."""
    from fomm.animator import Animator

    rows = []
    for precision in ("bf16", "fp32"):
        animator = Animator.from_config(config, random_init=True, device=device, precision=precision)
        h, w = animator.frame_size
        with torch.inference_mode():
            state = animator.encode_source(torch.rand(1, 3, h, w, device=device))
            for batch in batches:
                animator.batch_size = batch
                driving = list(torch.rand(batch, 3, h, w, device=device))
                for _ in range(2):
                    list(animator.animate(state, driving))
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                _sync(device)
                start = time.perf_counter()
                for _ in range(repeats):
                    list(animator.animate(state, driving))
                _sync(device)
                seconds = (time.perf_counter() - start) / (repeats * batch)
                rows.append({"config": Path(config).name, "job": "animate", "precision": precision, "batch": batch,
                             "ms_per_frame": round(1000 * seconds, 2), "frames_per_s": round(1 / seconds, 1),
                             "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                             if device.type == "cuda" else None})
                print(json.dumps(rows[-1]), flush=True)
        del animator, state
    return rows


def throughput(device: torch.device, config: str, batch: int, steps: int, compile_: bool = False) -> list[dict]:
    """ms per train step of the config at `batch`, in fp32, bf16 autocast, bf16 + channels_last (+ compile)."""
    from fomm.config.schema import load_config
    from fomm.train_step import build_train_state, to_channels_last, train_step

    cfg = load_config(config)
    size = cfg.dataset_params.shape[:2]
    rows = []
    cases = [("fp32", None, False), ("bf16", torch.bfloat16, False), ("bf16+channels_last", torch.bfloat16, True)]
    if compile_:
        cases.append(("bf16+channels_last+compile", torch.bfloat16, True))
    for name, dtype, channels_last in cases:
        torch.manual_seed(0)
        state = build_train_state(cfg.model_params, cfg.train_params, device=device)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            to_channels_last(state)
        batch_data = {k: torch.rand(batch, 3, *size, device=device).contiguous(memory_format=fmt)
                      for k in ("source", "driving")}
        full = torch.compile(state.generator_full) if name.endswith("compile") else None
        for _ in range(3):
            train_step(state, batch_data, generator_full=full, autocast_dtype=dtype)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            values, _ = train_step(state, batch_data, generator_full=full, autocast_dtype=dtype)
        _sync(device)
        seconds = (time.perf_counter() - start) / steps
        rows.append({"config": Path(config).name, "precision": name, "batch": batch,
                     "ms_per_step": round(1000 * seconds, 1), "samples_per_s": round(batch / seconds, 1),
                     "total_loss": round(values["total"], 4),
                     "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                     if device.type == "cuda" else None})
        print(json.dumps(rows[-1]), flush=True)
        del state
    return rows


def sync_batchnorm(device: torch.device, config: str) -> dict:
    """One process group of size 1: torch's SyncBatchNorm (what training uses on CUDA) equals plain batch norm."""
    import torch.distributed as dist

    from fomm.config.schema import load_config
    from fomm.train_step import build_train_state
    from training.sync_bn import convert_sync_batchnorm

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29561")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    try:
        cfg = load_config(config)
        torch.manual_seed(0)
        state = build_train_state(cfg.model_params, cfg.train_params, device=device)
        size = cfg.dataset_params.shape[:2]
        batch = {k: torch.rand(4, 3, *size, device=device) for k in ("source", "driving")}
        torch.manual_seed(1)
        plain_losses, plain = state.generator_full(batch)
        synced_model = convert_sync_batchnorm(state.generator_full, device)
        kinds = sorted({type(m).__name__ for m in synced_model.modules() if "BatchNorm" in type(m).__name__})
        torch.manual_seed(1)
        synced_losses, synced = synced_model(batch)
        diff = float((plain["prediction"] - synced["prediction"]).abs().max())
        return {"backend": dist.get_backend(), "batch_norm_classes": kinds, "prediction_max_abs_diff": diff,
                "perceptual_plain": round(float(plain_losses["perceptual"]), 6),
                "perceptual_synced": round(float(synced_losses["perceptual"]), 6)}
    finally:
        dist.destroy_process_group()


def learn(device: torch.device, data: Path, config: str, seconds: float, every: float, out: Path | None) -> dict:
    """Train the config on the rendered videos for `seconds`; held-out L1 vs copy-the-source every `every` s."""
    from fomm.checkpoint import checkpoint_bytes
    from fomm.config.schema import load_config
    from fomm.train_step import build_train_state, end_epoch, train_step
    from preprocessing.pairs import augment_pair, sample_pair
    from training.loop import to_model_batch, validate

    cfg = load_config(config)
    tp = cfg.train_params
    arrays = np.load(data)
    clips, test = arrays["clips"], arrays["test"]
    train_clips = clips[~test]
    val_batches = [{"frames": clips[test][:, ::4]}]  # every 4th frame of each held-out clip; frame 0 the source
    torch.manual_seed(tp.seed)
    state = build_train_state(cfg.model_params, tp, device=device)
    rng = np.random.default_rng(0)
    aug = cfg.dataset_params.augmentation_params

    def evaluate() -> tuple[float, float]:
        metrics = validate(state.kp_detector, state.generator, val_batches, device)  # the training job's protocol
        return metrics["val_l1"], metrics["val_l1_copy_source"]

    steps_per_epoch = max(1, len(train_clips) * tp.num_repeats // tp.batch_size)
    curve = [(0, 0.0, *evaluate())]
    start = time.perf_counter()
    next_val = every
    while time.perf_counter() - start < seconds:
        sources, drivings = [], []
        for _ in range(tp.batch_size):
            clip = train_clips[rng.integers(len(train_clips))]
            i, j = sample_pair(len(clip), rng)
            s, d = augment_pair(clip[i], clip[j], rng, aug)
            sources.append(s)
            drivings.append(d)
        train_step(state, to_model_batch({"source": np.stack(sources), "driving": np.stack(drivings)}, device))
        if state.step % steps_per_epoch == 0:
            end_epoch(state)
        elapsed = time.perf_counter() - start
        if elapsed >= next_val:
            next_val += every
            curve.append((state.step, round(elapsed, 1), *evaluate()))
            print(json.dumps({"step": curve[-1][0], "s": curve[-1][1], "val_l1": round(curve[-1][2], 5),
                              "copy": round(curve[-1][3], 5)}), flush=True)
    curve.append((state.step, round(time.perf_counter() - start, 1), *evaluate()))
    if out is not None:
        with atomic_open(out) as f:
            f.write(checkpoint_bytes(generator=state.generator, kp_detector=state.kp_detector,
                                     discriminator=state.discriminator, epoch=state.epoch))
    best = min(curve[1:], key=lambda row: row[2])
    last = curve[-1]
    return {"config": Path(config).name, "seconds": seconds, "steps": state.step,
            "steps_per_s": round(state.step / max(1e-9, last[1]), 1),
            "val_l1_untrained": round(curve[0][2], 5), "val_l1": round(last[2], 5), "copy_source": round(last[3], 5),
            "reduction_vs_copy_source": round(1 - last[2] / last[3], 4),
            "best": {"step": best[0], "val_l1": round(best[2], 5), "reduction": round(1 - best[2] / best[3], 4)},
            "curve": [(r[0], r[1], round(r[2], 5)) for r in curve]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("render")
    r.add_argument("--out", type=Path, default=DEFAULT_DATA)
    g = sub.add_parser("run")
    g.add_argument("--data", type=Path, default=DEFAULT_DATA, help="rendered first when missing")
    g.add_argument("--device", default=None, help="default: cuda; on a machine without one the benchmark is skipped")
    g.add_argument("--config", default=str(REPO / "configs" / "vox-256.yaml"))
    g.add_argument("--batch", type=int, nargs="+", default=[8], help="training batch sizes")
    g.add_argument("--animate-batches", type=int, nargs="*", default=[32, 64, 128],
                   help="animation batch sizes at 256² (none: skip)")
    g.add_argument("--compile", action="store_true", help="also train with torch.compile")
    g.add_argument("--steps", type=int, default=10)
    g.add_argument("--learn-config", default=str(REPO / "configs" / "demo-64.yaml"))
    g.add_argument("--learn-seconds", type=float, default=360.0)
    g.add_argument("--every", type=float, default=30.0)
    g.add_argument("--checkpoint", type=Path, default=None, help="where to save the learned model")
    g.add_argument("--out", default="bench_output/bench_gpu.json")
    args = p.parse_args(argv)
    if args.cmd is None:  # `make bench`: every benchmark without arguments
        args = p.parse_args(["run", *(argv or [])])
    if args.cmd == "render":
        render(args.out)
        return 0
    from benchmarks.bench_train import write_report

    if args.device is None and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here, skipped (pass --device cpu to run it on the CPU anyway)")
        return 0
    device = torch.device(args.device or "cuda")
    if args.learn_seconds > 0 and not args.data.is_file():
        render(args.data)
    report: dict = {"benchmark": "bench_gpu", "command": " ".join([sys.executable, *sys.argv]),
                    "torch": torch.__version__,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    report["animate"] = animate_throughput(device, args.config, args.animate_batches)
    report["throughput"] = [row for b in args.batch
                            for row in throughput(device, args.config, b, args.steps, args.compile)]
    report["sync_batchnorm"] = sync_batchnorm(device, args.learn_config)
    print(json.dumps(report["sync_batchnorm"]), flush=True)
    if args.learn_seconds > 0:
        report["learning"] = learn(device, args.data, args.learn_config, args.learn_seconds, args.every,
                                   args.checkpoint)
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
