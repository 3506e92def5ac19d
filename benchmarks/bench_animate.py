"""Frames/s of `fomm animate` (vox-256 architecture, 256², real talking-head frames) in each precision, against the
model path as it was before the speed work (the original FOMM's computation), measured in one run.

python benchmarks/bench_animate.py [--frames 100] [--bare-frames 16] [--batch-size 8] [--out bench_output]

Bare model time: the Animator's inference path on frames already in memory, per precision (fp32, bf16) with
channels_last and folded batch norm (the defaults), and the "before" path: fp32, contiguous memory, batch norm
unfolded, every output of the generator computed (deformed, sparse_deformed, mask) and the dense motion network's
source share recomputed each batch, as the original FOMM does. The cases are interleaved in rounds, so a busy
machine's load drifts over all of them alike; ratios are what carry over. Then `fomm animate` itself on a
`--frames`-long clip in the default precision: the time spent inside the networks (forward hooks) against the
run's total gives the share outside them (decode, resize, encode, audio). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def make_driving(path: Path, frames: int, size: int) -> Path:
    """A size×size, `frames`-long driving video with audio, cut and resized from real media."""
    from fomm.animator import fit_frames, to_uint8
    from services.video_read import probe_video, read_frames
    from services.video_write import write_video

    src = DATA / "face_talk_a.mp4"
    video = read_frames(src, frames)  # T×512×512×3
    resized = to_uint8(fit_frames(torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255, (size, size)))
    return write_video(path, resized, probe_video(src).fps, audio_from=src)


def before_path(animator, source: torch.Tensor, driving: torch.Tensor) -> None:
    """The computation before the speed work: full generator outputs, the source's motion share every batch."""
    from fomm.animation import normalize_kp

    kp_source = animator.kp_detector(source)
    features = animator.generator.encode(source)
    kp_initial = None
    for i in range(0, driving.shape[0], animator.batch_size):
        x = driving[i:i + animator.batch_size]
        b = x.shape[0]
        kp_driving = animator.kp_detector(x)
        kp_initial = kp_initial or {k: v[:1] for k, v in kp_driving.items()}
        kp_s = {k: v.expand(b, *v.shape[1:]) for k, v in kp_source.items()}
        kp_norm = normalize_kp(kp_s, kp_driving, {k: v.expand(b, *v.shape[1:]) for k, v in kp_initial.items()},
                               adapt_movement_scale=True, use_relative_movement=True, use_relative_jacobian=True)
        animator.generator(source.expand(b, -1, -1, -1), kp_driving=kp_norm, kp_source=kp_s,
                           source_features=features.expand(b, -1, -1, -1))


def fast_path(animator, source: torch.Tensor, driving: torch.Tensor) -> None:
    """The Animator's inference path (source prepared once, prediction only, precision and layout as built)."""
    for _ in animator.animate(source, list(driving)):
        pass


def bare_times(config: str, source: np.ndarray, frames: np.ndarray, batch_size: int, rounds: int) -> dict:
    """Seconds per frame of each case, median over interleaved rounds."""
    from fomm.animator import Animator

    cases = {
        "before (fp32, contiguous, all outputs)": (before_path, dict(precision="fp32", channels_last=False,
                                                                     fold_batch_norm=False)),
        "fp32": (fast_path, dict(precision="fp32")),
        "bf16": (fast_path, dict(precision="bf16")),
    }
    animators = {name: Animator.from_config(config, random_init=True, batch_size=batch_size, **opts)
                 for name, (_, opts) in cases.items()}
    inputs = {name: (a.prepare(source), a.prepare(frames)) for name, a in animators.items()}
    times: dict[str, list[float]] = {name: [] for name in cases}
    with torch.inference_mode():
        for name, (fn, _) in cases.items():  # warm-up (allocator, oneDNN kernels)
            fn(animators[name], inputs[name][0], inputs[name][1][:batch_size])
        for _ in range(rounds):
            for name, (fn, _) in cases.items():
                start = time.perf_counter()
                fn(animators[name], *inputs[name])
                times[name].append((time.perf_counter() - start) / len(frames))
    return {name: statistics.median(t) for name, t in times.items()}


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
    from services.video_read import iter_frames
    from services.video_write import write_video

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
    parser.add_argument("--frames", type=int, default=100, help="frames of the `fomm animate` run")
    parser.add_argument("--bare-frames", type=int, default=16, help="frames per bare-model timing")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the bare-model timings")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default=str(REPO / "bench_output"))
    args = parser.parse_args()
    from animate.files import animate_file
    from fomm.animator import Animator
    from services.image_read import read_image
    from services.video_read import read_frames

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    driving = make_driving(out / "driving_256.mp4", args.frames, args.size)
    source_path = DATA / "face_source_d.jpg"
    source, frames = read_image(source_path), read_frames(driving)
    for earlier in ("animated.mp4", "animated_cli.mp4"):  # an earlier run's: an animation never replaces a file
        (out / earlier).unlink(missing_ok=True)
    bare = bare_times(args.config, source, frames[: args.bare_frames], args.batch_size, args.rounds)
    before = bare["before (fp32, contiguous, all outputs)"]

    animator = Animator.from_config(args.config, random_init=True, batch_size=args.batch_size)  # default precision
    clock = ModelClock(animator)
    result = animate_file(animator, source_path, driving, out / "animated.mp4", progress=False)
    clock.remove()
    start = time.perf_counter()  # the whole command as a user runs it: start-up and model build included
    cmd = [str(Path(sys.executable).parent / "fomm"), "animate", "--config", args.config, "--random-init",
           "--source", str(source_path), "--driving", str(driving), "--out", str(out / "animated_cli.mp4"),
           "--quiet", "--batch-size", str(args.batch_size)]
    subprocess.run(cmd, check=True, capture_output=True)
    command_s = time.perf_counter() - start
    report = {
        "benchmark": "fomm animate", "config": Path(args.config).name, "weights": "random init",
        "size": f"{args.size}x{args.size}", "batch_size": args.batch_size, "device": "cpu",
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "bare_ms_per_frame": {k: round(1000 * v, 1) for k, v in bare.items()},
        "bare_frames_per_s": {k: round(1 / v, 3) for k, v in bare.items()},
        "speedup_vs_before": {k: round(before / v, 2) for k, v in bare.items()},
        "animate_frames": result.num_frames, "animate_precision": "auto",
        "animate_s": round(result.seconds, 2), "animate_fps": round(result.frames_per_second, 3),
        "model_s_in_animate": round(clock.seconds, 2),
        "outside_networks_pct": round(100 * (result.seconds - clock.seconds) / result.seconds, 2),
        "command_wall_s": round(command_s, 2), "command_fps": round(args.frames / command_s, 3),
        **io_breakdown(driving, out, animator),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
