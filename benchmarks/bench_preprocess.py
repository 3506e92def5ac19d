"""Preprocessing speed: clips/s and frames/s of process_video, as a ratio to pure PyAV decoding of the same videos.

python benchmarks/bench_preprocess.py [--frames 120] [--ray] [--codecs]   → prints one JSON object

Both rates are measured in the same run on the same videos: the real face clips of ../shared/data (face
detection, tracking, cropping, 256² JPEG encoding) and the built-in synthetic set (full-frame crops, 64²).
A ratio of 0.5 means the whole pipeline runs at half the speed of decoding alone. --ray also times the
Ray Data job end to end (local Ray, startup included); --codecs re-measures the frame-format choice.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocessing import shards  # noqa: E402
from preprocessing.config import PreprocessConfig  # noqa: E402
from preprocessing.process import detector_for, process_video  # noqa: E402
from preprocessing.synthetic import generate_synthetic_videos  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FACE_VIDEOS = ["face_talk_a.mp4", "face_talk_b.mp4", "face_talk_c.mp4", "face_talk_d.mp4"]


def decode_rate(paths: list[Path], max_frames: int | None) -> tuple[int, float]:
    """Frames decoded to RGB arrays by PyAV alone, and the seconds it took."""
    n, t0 = 0, time.perf_counter()
    for p in paths:
        with av.open(str(p)) as c:
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(c.decode(stream)):
                if max_frames is not None and i >= max_frames:
                    break
                frame.to_ndarray(format="rgb24")
                n += 1
    return n, time.perf_counter() - t0


def pipeline_rate(paths: list[Path], cfg: PreprocessConfig) -> tuple[int, int, float]:
    """(clips, input frames, seconds) of process_video over the videos, detector built once."""
    detector = detector_for(cfg)
    clips = frames = 0
    t0 = time.perf_counter()
    for p in paths:
        records = process_video(str(p), cfg, detector=detector)
        clips += len(records)
        with av.open(str(p)) as c:
            total = c.streams.video[0].frames
        frames += min(total, cfg.max_frames or total)
    return clips, frames, time.perf_counter() - t0


def measure(name: str, paths: list[Path], cfg: PreprocessConfig) -> dict:
    n_dec, t_dec = decode_rate(paths, cfg.max_frames)
    clips, frames, t = pipeline_rate(paths, cfg)
    return {"set": name, "videos": len(paths), "frames": frames, "clips": clips,
            "decode_fps": round(n_dec / t_dec, 1), "pipeline_fps": round(frames / t, 1),
            "clips_per_s": round(clips / t, 3), "ratio_to_decode": round((frames / t) / (n_dec / t_dec), 3)}


def codec_table(frames: np.ndarray) -> list[dict]:
    rows = []
    for fmt, quality in (("jpeg", 95), ("jpeg", 90), ("png", 0), ("webp", 90)):
        t0 = time.perf_counter()
        enc = [shards.encode_frame(f, fmt, quality) for f in frames]
        t_enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        dec = shards.decode_frames(enc)
        t_dec = time.perf_counter() - t0
        mse = float(np.mean((dec.astype(np.float64) - frames) ** 2))
        rows.append({"format": fmt, "quality": quality, "kb_per_frame": round(np.mean([len(b) for b in enc]) / 1024, 1),
                     "encode_ms": round(t_enc / len(frames) * 1e3, 2), "decode_ms": round(t_dec / len(frames) * 1e3, 2),
                     "psnr_db": round(10 * np.log10(255**2 / mse), 1) if mse > 0 else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=120, help="frames read from each real video")
    p.add_argument("--ray", action="store_true", help="also time the Ray Data job end to end")
    p.add_argument("--codecs", action="store_true", help="also compare JPEG / PNG / WebP on 256² face crops")
    args = p.parse_args(argv)
    out: dict = {"benchmark": "preprocess", "results": []}
    faces = [SHARED / n for n in FACE_VIDEOS if (SHARED / n).is_file()]
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = generate_synthetic_videos(Path(tmp) / "synthetic", num_videos=12, size=64, num_frames=48)
        if faces:
            cfg = PreprocessConfig(input="-", output="-", kind="face", size=256, max_frames=args.frames)
            out["results"].append(measure("real faces (detect+track+crop, 256² JPEG)", faces, cfg))
        cfg = PreprocessConfig(input="-", output="-", kind="none", size=64, min_frames=8)
        out["results"].append(measure("synthetic (full frame, 64² JPEG)", synthetic, cfg))
        if args.ray:
            from preprocessing.ray_jobs import run_preprocess

            t0 = time.perf_counter()
            res = run_preprocess(PreprocessConfig(input=str(synthetic[0].parent), output=str(Path(tmp) / "ds"),
                                                  kind="none", size=64, min_frames=8))
            seconds = time.perf_counter() - t0
            out["ray_job"] = {"set": "synthetic", "clips": res["num_clips"], "frames": res["num_frames"],
                              "seconds_with_startup": round(seconds, 2),
                              "clips_per_s": round(res["num_clips"] / seconds, 3)}
        if args.codecs and faces:
            cfg = PreprocessConfig(input="-", output="-", kind="face", size=256, max_frames=40, frame_format="png")
            crops = shards.decode_frames(process_video(str(faces[0]), cfg)[0].frames)
            out["codecs"] = codec_table(crops)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
