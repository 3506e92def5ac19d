"""Real-world animation: jitter with and without --smooth, its lag, the auto-crop + paste-back overhead, 512² cost.

python benchmarks/bench_realworld.py [--part jitter|speed|size|all] [--frames 60] [--smooth 3] [--data DIR]

jitter: a held-still driving head (frame 0 of face_talk_a repeated, with seeded Gaussian sensor noise σ 3/255,
        as a camera on a tripod records a still face) and a moving one (face_talk_a's first frames): mean
        frame-to-frame acceleration |x[t+1] − 2x[t] + x[t−1]| of the result's keypoints (vox-256 architecture,
        RANDOM-INIT weights: no checkpoint here) and of the crop box (pixels), smoothing off and on; lag on the
        moving head: the shift (frames) that best aligns the smoothed trajectory with the raw one.
speed:  per-frame time of the networks at 256² (vox-256, driving keypoints + generator) against the auto-crop
        and paste-back work of the same frames (detection every 3rd frame, tracking, crops, feathered paste into
        the 577×880 portrait), measured in one run.
size:   vox-256 vs vox-512 (random init): seconds per frame and peak memory of one process per config (CPU).
Prints one JSON object per part.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def acceleration(x: np.ndarray) -> float:
    """Mean |second difference| over time.  x: T×..."""
    return float(np.abs(x[2:] - 2 * x[1:-1] + x[:-2]).mean())


def lag(raw: np.ndarray, smoothed: np.ndarray, max_shift: int = 8) -> int:
    """The delay d (frames) minimising mean |smoothed[t] − raw[t − d]|.  T×..."""
    errors = [np.abs(smoothed[d:] - raw[:len(raw) - d]).mean() for d in range(max_shift + 1)]
    return int(np.argmin(errors))


def still_clip(frames: int, data: Path, sigma: float = 3.0) -> np.ndarray:
    from services.video_read import read_frames

    first = read_frames(data / "face_talk_a.mp4", 1)[0].astype(np.float32)
    noise = np.random.default_rng(0).normal(0, sigma, size=(frames, *first.shape))
    return np.clip(np.rint(first + noise), 0, 255).astype(np.uint8)  # T×H×W×3


def keypoints_and_boxes(driving: np.ndarray, smooth: float, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Result keypoints (relative motion, as `fomm animate`) and crop boxes of a driving clip.  T×K×2, T×4"""
    from animate.backends import subject_detector
    from animate.crop_plan import crop_subpixel, plan_crops
    from fomm.animation import normalize_kp
    from fomm.animator import Animator
    from fomm.smoothing import OneEuroFilter

    plan = plan_crops(source, driving, subject_detector("face"), "face", smooth=smooth)
    animator = Animator.from_config(REPO / "configs" / "vox-256.yaml", random_init=True, crop="none")
    with torch.inference_mode():
        src = animator.prepare(crop_subpixel(source, plan.source_box, animator.frame_size))
        kp_source = animator.kp_detector(src)
        crops = np.stack([crop_subpixel(f, b, animator.frame_size) for f, b in zip(driving, plan.driving_boxes)])
        raw = animator.kp_detector(animator.prepare(crops))
        kp = {k: OneEuroFilter(smooth).sequence(v) for k, v in raw.items()}
        first = {k: v[:1] for k, v in kp.items()}
        b = len(crops)
        norm = normalize_kp({k: v.expand(b, *v.shape[1:]) for k, v in kp_source.items()}, kp,
                            {k: v.expand(b, *v.shape[1:]) for k, v in first.items()}, adapt_movement_scale=True,
                            use_relative_movement=True, use_relative_jacobian=True)
    return norm["value"].numpy(), plan.driving_boxes.astype(np.float64)


def part_jitter(args: argparse.Namespace) -> dict:
    from services.image_read import read_image
    from services.video_read import read_frames

    source = read_image(args.data / "face_source_e.jpg")
    clips = {"still": still_clip(args.frames, args.data), "moving": read_frames(args.data / "face_talk_a.mp4",
                                                                               args.frames)}
    out: dict = {"part": "jitter", "model": "vox-256 RANDOM-INIT (no checkpoint)", "smooth": args.smooth,
                 "frames": args.frames}
    for name, clip in clips.items():
        kp0, box0 = keypoints_and_boxes(clip, 0.0, source)
        kp1, box1 = keypoints_and_boxes(clip, args.smooth, source)
        out[name] = {"kp_acceleration_off": acceleration(kp0), "kp_acceleration_on": acceleration(kp1),
                     "box_acceleration_px_off": acceleration(box0), "box_acceleration_px_on": acceleration(box1)}
        out[name]["kp_ratio"] = out[name]["kp_acceleration_off"] / max(out[name]["kp_acceleration_on"], 1e-12)
        out[name]["box_ratio"] = out[name]["box_acceleration_px_off"] / max(out[name]["box_acceleration_px_on"],
                                                                            1e-12)
        if name == "moving":
            out[name]["kp_lag_frames"] = lag(kp0, kp1)
            out[name]["box_lag_frames"] = lag(box0, box1)
    return out


def part_speed(args: argparse.Namespace) -> dict:
    from animate.backends import subject_detector
    from animate.crop_plan import crop_subpixel, plan_crops
    from animate.paste import even_frame, paste_back
    from fomm.animator import Animator, to_uint8
    from services.image_read import read_image
    from services.video_read import read_frames

    source = read_image(args.data / "face_source_e.jpg")
    driving = read_frames(args.data / "face_talk_a.mp4", args.frames)
    animator = Animator.from_config(REPO / "configs" / "vox-256.yaml", random_init=True, crop="none", batch_size=8)
    started = time.perf_counter()
    plan = plan_crops(source, driving, subject_detector("face"), "face", smooth=args.smooth)
    full = even_frame(source)
    source_crop = crop_subpixel(full, plan.source_box, animator.frame_size)
    crops = [crop_subpixel(f, b, animator.frame_size) for f, b in zip(driving, plan.driving_boxes)]
    crop_seconds = time.perf_counter() - started
    started = time.perf_counter()
    results = [r for batch in animator.animate(source_crop, crops) for r in to_uint8(batch.prediction)]
    network_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for result in results:
        paste_back(full, result, plan.source_box)
    paste_seconds = time.perf_counter() - started
    n = len(driving)
    return {"part": "speed", "model": "vox-256 RANDOM-INIT, 256²", "frames": n, "threads": torch.get_num_threads(),
            "network_ms_per_frame": 1000 * network_seconds / n, "autocrop_ms_per_frame": 1000 * crop_seconds / n,
            "paste_ms_per_frame": 1000 * paste_seconds / n,
            "overhead_percent": 100 * (crop_seconds + paste_seconds) / network_seconds,
            "detector": plan.detector, "source": f"{source.shape[1]}×{source.shape[0]}"}


def one_size(config: str, frames: int) -> dict:
    """Seconds per frame and this process's peak memory animating `frames` random frames (batch 1)."""
    from fomm.animator import Animator

    animator = Animator.from_config(REPO / "configs" / config, random_init=True, crop="none", batch_size=1)
    h, w = animator.frame_size
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    driving = rng.integers(0, 256, size=(frames + 1, h, w, 3), dtype=np.uint8)
    list(animator.animate(source, driving[:1]))  # warm-up
    started = time.perf_counter()
    list(animator.animate(source, driving[1:]))
    seconds = (time.perf_counter() - started) / frames
    return {"config": config, "size": h, "seconds_per_frame": seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def part_size(args: argparse.Namespace) -> dict:
    rows = []
    for config in ("vox-256.yaml", "vox-512.yaml"):  # one process each: peak memory is per process
        code = (f"import json, sys; sys.path.insert(0, {str(REPO)!r}); sys.path.insert(0, {str(REPO / 'benchmarks')!r});"
                f"import torch; torch.set_num_threads({torch.get_num_threads()});"
                f"from bench_realworld import one_size; print(json.dumps(one_size({config!r}, {args.size_frames})))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"part": "size", "model": "RANDOM-INIT, CPU, batch 1", "threads": torch.get_num_threads(), "rows": rows,
            "time_ratio_512_to_256": rows[1]["seconds_per_frame"] / rows[0]["seconds_per_frame"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("jitter", "speed", "size", "all"), default="all")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size-frames", type=int, default=3)
    parser.add_argument("--smooth", type=float, default=3.0)
    parser.add_argument("--data", type=Path, default=DATA, help="the sample media folder")
    args = parser.parse_args()
    torch.manual_seed(0)
    parts = {"jitter": part_jitter, "speed": part_speed, "size": part_size}
    for name, fn in parts.items():
        if args.part in (name, "all"):
            print(json.dumps(fn(args)), flush=True)


if __name__ == "__main__":
    main()
