"""Frames/s of `fomm animate` (vox-256 architecture, 256², 100 driving frames) against the bare model forward.

python benchmarks/bench_animate.py [--frames 100] [--batch-size 8] [--config configs/vox-256.yaml] [--out bench_output]

The bare forward is the same work as the command's model part (driving keypoints, relative motion, generator with
the source's features computed once) on frames already in memory; the command adds decoding, resizing, keypoint
normalisation bookkeeping, encoding and the audio remux. Prints one JSON object. On a shared machine the load
drifts between runs, so the overhead is also measured inside the command's own run (time in the networks, by
forward hooks, against the run's total).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def make_driving(path: Path, frames: int, size: int) -> Path:
    """A size×size, `frames`-long driving video with audio, cut and resized from real media."""
    from fomm.animator import fit_frames, to_uint8
    from preprocessing.video_io import probe_video, read_frames, write_video

    src = DATA / "face_talk_a.mp4"
    video = read_frames(src, frames)  # T×512×512×3
    resized = to_uint8(fit_frames(torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255, (size, size)))
    return write_video(path, resized, probe_video(src).fps, audio_from=src)


def bare_forward(animator, source: np.ndarray, driving: np.ndarray) -> float:
    """Seconds for the model alone: source encoding once, then all driving frames (already at the model's size)."""
    from fomm.animation import normalize_kp

    source_x = animator.prepare(source)  # inputs as tensors at the model's size, outside the timing
    x_all = animator.prepare(driving)  # T×3×H×W
    start = time.perf_counter()
    with torch.inference_mode():
        kp_source_1 = animator.kp_detector(source_x)
        state = SimpleNamespace(image=source_x, kp=kp_source_1, features=animator.generator.encode(source_x))
        kp_initial = None
        for i in range(0, x_all.shape[0], animator.batch_size):
            x = x_all[i:i + animator.batch_size]
            b = x.shape[0]
            kp_driving = animator.kp_detector(x)
            kp_initial = kp_initial or {k: v[:1] for k, v in kp_driving.items()}
            kp_source = {k: v.expand(b, *v.shape[1:]) for k, v in state.kp.items()}
            kp_norm = normalize_kp(kp_source, kp_driving, {k: v.expand(b, *v.shape[1:]) for k, v in kp_initial.items()},
                                   adapt_movement_scale=True, use_relative_movement=True, use_relative_jacobian=True)
            animator.generator(state.image.expand(b, -1, -1, -1), kp_driving=kp_norm, kp_source=kp_source,
                               source_features=state.features.expand(b, -1, -1, -1))
    return time.perf_counter() - start


class ModelClock:
    """Seconds spent inside the networks (forward hooks), so model time and the rest come from the same run."""

    def __init__(self, animator) -> None:  # noqa: ANN001
        self.seconds, self._start, self.handles = 0.0, 0.0, []
        g = animator.generator
        for first, last in ((animator.kp_detector, animator.kp_detector), (g, g), (g.first, g.down_blocks[-1])):
            self.handles.append(first.register_forward_pre_hook(self._begin))
            self.handles.append(last.register_forward_hook(self._end))

    def _begin(self, *_) -> None:
        self._start = time.perf_counter()

    def _end(self, *_) -> None:
        self.seconds += time.perf_counter() - self._start

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def io_breakdown(driving: Path, out_dir: Path, animator) -> dict:
    """Seconds spent decoding, fitting to the model's size, and encoding (with audio) the same frames."""
    from preprocessing.video_io import iter_frames, write_video

    t0 = time.perf_counter()
    frames = list(iter_frames(driving))
    t1 = time.perf_counter()
    prepared = [animator.prepare(f) for f in frames]
    t2 = time.perf_counter()
    write_video(out_dir / "encode_only.mp4", frames, 25.0, audio_from=driving)
    t3 = time.perf_counter()
    del prepared
    return {"decode_s": round(t1 - t0, 3), "prepare_s": round(t2 - t1, 3), "encode_with_audio_s": round(t3 - t2, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "vox-256.yaml"))
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default=str(REPO / "bench_output"))
    args = parser.parse_args()
    from fomm import Animator
    from fomm.cli import animate_file
    from preprocessing.video_io import read_frames, read_image

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    driving = make_driving(out / "driving_256.mp4", args.frames, args.size)
    source_path = DATA / "face_source_d.jpg"
    animator = Animator.from_config(args.config, random_init=True, batch_size=args.batch_size)
    source, frames = read_image(source_path), read_frames(driving)
    bare_forward(animator, source, frames[: args.batch_size])  # warm-up (allocator, oneDNN kernels)

    # bare, command, bare: the two bare runs bracket the command against drifting load on a shared machine
    forward_s = [bare_forward(animator, source, frames)]
    clock = ModelClock(animator)
    result = animate_file(animator, source_path, driving, out / "animated.mp4", progress=False)
    clock.remove()
    forward_s.append(bare_forward(animator, source, frames))
    forward = float(np.mean(forward_s))
    start = time.perf_counter()  # the whole command as a user runs it: start-up and model build included
    cmd = [str(Path(sys.executable).parent / "fomm"), "animate", "--config", args.config, "--random-init",
           "--source", str(source_path), "--driving", str(driving), "--out", str(out / "animated_cli.mp4"),
           "--quiet", "--batch-size", str(args.batch_size)]
    subprocess.run(cmd, check=True, capture_output=True)
    command_s = time.perf_counter() - start
    report = {
        "benchmark": "fomm animate", "config": Path(args.config).name, "weights": "random init",
        "frames": result.num_frames, "size": f"{args.size}x{args.size}", "batch_size": args.batch_size,
        "device": "cpu", "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "bare_forward_s": [round(s, 2) for s in forward_s], "bare_forward_fps": round(args.frames / forward, 3),
        "animate_s": round(result.seconds, 2), "animate_fps": round(result.frames_per_second, 3),
        "overhead_pct": round(100 * (result.seconds - forward) / forward, 2),
        "model_s_in_animate": round(clock.seconds, 2),
        "overhead_pct_same_run": round(100 * (result.seconds - clock.seconds) / clock.seconds, 2),
        "command_wall_s": round(command_s, 2), "command_fps": round(args.frames / command_s, 3),
        **io_breakdown(driving, out, animator),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
