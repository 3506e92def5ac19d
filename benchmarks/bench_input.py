"""The training input pipeline on one CPU core: samples/s of clip rows → augmented (source, driving) pairs at 256²
(JPEG decode + vox-256 augmentation), against decoding the same two JPEG frames alone, and so the CPU cores one
GPU needs. Prints JSON.

python benchmarks/bench_input.py [--frames 32] [--repeats 8] [--gpu-samples-per-s 143]

Clips: the real talking-head videos of ../shared/data, their first `--frames` frames resized to 256² and stored as
JPEG (quality 95) as preprocessing writes them.

143 samples/s: vox-256 training throughput measured on one H100 (bf16, channels_last; see docs). Cores needed =
that rate / the per-core rate measured here (one thread: cv2 and torch pinned to one).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fomm.config.schema import load_config  # noqa: E402
from preprocessing import shards  # noqa: E402
from services.video_read import read_frames  # noqa: E402
from training.data import PairSpec, clips_to_pairs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
VIDEOS = ["face_talk_a.mp4", "face_talk_b.mp4", "face_talk_c.mp4", "face_talk_d.mp4", "face_desk_portrait.mp4"]


def real_clips(num_frames: int, size: int = 256):  # noqa: ANN201 - a pyarrow Table of clip rows
    """One clip row per shared talking-head video: frames resized to size² and JPEG-encoded."""
    records = []
    for i, name in enumerate(VIDEOS):
        frames = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
                  for f in read_frames(SHARED / name, num_frames)]
        records.append(shards.ClipRecord(
            video_id=f"v{i}", clip_id=f"v{i}_000", person_id=f"p{i}", split="train", fps=25.0, height=size,
            width=size, start_frame=0, end_frame=len(frames), crop_box=(0, 0, size, size), source_path=name,
            source_height=size, source_width=size, frames=[shards.encode_frame(f, "jpeg") for f in frames]))
    return shards.records_to_table(records)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--repeats", type=int, default=8, help="pairs drawn per clip (num_repeats)")
    p.add_argument("--gpu-samples-per-s", type=float, default=143.0)
    args = p.parse_args()
    cv2.setNumThreads(1)

    cfg = load_config(ROOT / "configs" / "vox-256.yaml")
    table = real_clips(args.frames)
    h, w = cfg.dataset_params.shape[:2]
    spec = PairSpec((int(h), int(w)), args.repeats, False, cfg.dataset_params.augmentation_params)
    rng = np.random.default_rng(0)

    clips_to_pairs(table.slice(0, 1), spec, rng)  # warm-up (imports, first allocations)
    start = time.perf_counter()
    out = clips_to_pairs(table, spec, rng)
    pipeline_s = time.perf_counter() - start
    samples = len(out["source"])

    frames = [table.column("frames")[r].values for r in range(table.num_rows)]
    start = time.perf_counter()
    for r in range(table.num_rows):
        for k in range(args.repeats):
            shards.decode_frames([frames[r][k % len(frames[r])].as_py(), frames[r][(k + 7) % len(frames[r])].as_py()])
    decode_s = time.perf_counter() - start

    per_core = samples / pipeline_s
    print(json.dumps({
        "benchmark": "training_input_pipeline", "size": 256, "samples": samples,
        "samples_per_s_per_core": round(per_core, 1),
        "decode_only_samples_per_s": round(samples / decode_s, 1),
        "ratio_to_decode": round(decode_s / pipeline_s, 3),
        "gpu_samples_per_s": args.gpu_samples_per_s,
        "cores_per_gpu": math.ceil(args.gpu_samples_per_s / per_core),
    }, indent=1))


if __name__ == "__main__":
    main()
