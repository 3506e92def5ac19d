"""Preprocess raw videos into clip shards on Ray Data (decode → detect → track → crop → resize → Parquet).

python pipelines/preprocess.py --input DIR|GLOB|CSV|synthetic[:N] --output DIR [--kind face|person|none]
    [--size 256] [--workers N]        (local paths or s3://; also: ray job submit -- python pipelines/preprocess.py …)
Re-running on the same --output skips finished videos; failed videos go to the error table, never stop the job.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocessing.config import PreprocessConfig  # noqa: E402
from services import checks  # noqa: E402
from services.cli import ArgumentParser, UserError, at_least, run_cli, user_input  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="folder, glob, metadata CSV (VoxCeleb/Tai-Chi-HD) or synthetic[:N]")
    p.add_argument("--output", required=True, help="dataset root, local or s3://")
    p.add_argument("--kind", default="face", choices=["face", "person", "none"], help="what to detect and crop")
    p.add_argument("--size", type=at_least(8), default=256, help="clip frames are SIZE×SIZE")
    p.add_argument("--workers", type=at_least(1), default=None, help="parallel video processors (default: all CPUs)")
    p.add_argument("--detector", default="auto", help="auto, s3fd, haar, hog or none")
    p.add_argument("--detect-every", type=at_least(1), default=5, help="detect on every N-th frame")
    p.add_argument("--min-frames", type=at_least(1), default=32, help="drop tracks shorter than this")
    p.add_argument("--min-size", type=int, default=64, help="drop tracks smaller than this (source pixels)")
    p.add_argument("--margin", type=float, default=None, help="crop enlargement per side (× box size)")
    p.add_argument("--max-frames", type=int, default=None, help="read only the first N frames of each video")
    p.add_argument("--max-clip-frames", type=int, default=None, help="split longer tracks into clips")
    p.add_argument("--fps", type=float, default=None, help="resample videos to this frame rate")
    p.add_argument("--frame-format", default="jpeg", choices=["jpeg", "png", "webp"])
    p.add_argument("--shard-mb", type=at_least(0.001, float), default=256.0, help="target shard size in MiB")
    p.add_argument("--video-dir", default=None, help="raw videos of a metadata CSV (default: the CSV's folder)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="test share when the input has no split")
    p.add_argument("--endpoint", default=None, help="S3 endpoint URL (default: FOMM_S3_ENDPOINT/AWS_ENDPOINT_URL)")
    p.add_argument("--retry-errors", action="store_true", help="re-run videos listed in the error table")
    p.add_argument("--no-ray", action="store_true", help="run in this process without Ray")
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local instance)")
    return p.parse_args(argv)


def check_inputs(cfg: PreprocessConfig) -> None:
    """Before Ray starts or anything is written: the output can be written and the input names videos."""
    from preprocessing.sources import VIDEO_EXTENSIONS, collect_tasks
    from services import storage

    checks.writable_storage("--output", cfg.output, cfg.endpoint)
    if cfg.input == "synthetic" or cfg.input.startswith("synthetic:"):
        count = cfg.input.partition(":")[2] or "1"
        if not count.isdigit() or int(count) < 1:
            raise UserError(f"--input {cfg.input}: expected synthetic or synthetic:N with N ≥ 1")
        return
    storage.check_reachable("--input", cfg.input, cfg.endpoint)
    if not storage.is_remote(cfg.input) and not any(c in cfg.input for c in "*?[") and not Path(cfg.input).exists():
        raise UserError(f"--input {cfg.input}: no such folder or file (expected a folder, glob or metadata CSV "
                        "of videos)")
    with user_input("--input"):
        tasks = collect_tasks(cfg)
    if not tasks:
        raise UserError(f"--input {cfg.input}: no videos (expected a folder, glob or metadata CSV of "
                        f"{', '.join(VIDEO_EXTENSIONS)} files)")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv, "preprocess")


def _main(argv: list[str]) -> int:
    args = parse_args(argv)
    with user_input():
        cfg = PreprocessConfig(
        input=args.input, output=args.output, kind=args.kind, size=args.size, workers=args.workers,
        detector=args.detector, detect_every=args.detect_every, min_frames=args.min_frames,
        min_size=args.min_size, margin=args.margin, max_frames=args.max_frames,
        max_clip_frames=args.max_clip_frames, target_fps=args.fps, frame_format=args.frame_format,
        shard_bytes=int(args.shard_mb * 1024 * 1024), video_dir=args.video_dir, test_fraction=args.test_fraction,
        endpoint=args.endpoint, retry_errors=args.retry_errors,
    )
    check_inputs(cfg)
    if args.no_ray:
        from preprocessing.dataset_writer import run_local

        result = run_local(cfg)
    else:
        from preprocessing.ray_jobs import run_preprocess

        result = run_preprocess(cfg, address=args.address)
    print(f"shards:   {result['shards']} ({result['num_shards']} files, {result['num_clips']} clips, "
          f"{result['num_frames']} frames)")
    print(f"manifest: {result['manifest']}")
    print(f"errors:   {result['errors']} ({result['num_errors']} failed videos)")
    print(f"S3 retries: {result['s3_retries']}")
    print("result: " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
