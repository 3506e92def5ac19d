"""Preprocess raw videos into clip shards on Ray Data (decode → detect → track → crop → resize → Parquet).

python pipelines/preprocess.py --input DIR|GLOB|CSV|synthetic[:N] --output DIR   (local paths or s3://)
Re-running on the same --output skips finished videos; failed videos go to the error table, never stop the job.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root importable

from preprocessing.config import PreprocessConfig  # noqa: E402
from services import checks, cli  # noqa: E402
from services.ray_address import add_ray_address_flag  # noqa: E402
from services.stage import Stage, Summary  # noqa: E402


def add_flags(p: argparse.ArgumentParser) -> None:
    cfg = cli.field_flags(p, PreprocessConfig)  # defaults, help, types and ranges: PreprocessConfig's rules
    cfg("input", required=True)
    cfg("output", required=True)
    for name in ("kind", "size", "workers", "detector", "detect_every", "min_frames", "min_size", "margin",
                 "max_frames", "max_clip_frames", "target_fps", "frame_format", "video_dir", "test_fraction", "endpoint"):
        cfg(name)
    default_mb = cli.field_default(PreprocessConfig, "shard_bytes") / 2**20
    p.add_argument("--shard-mb", type=cli.at_least(0.001, float), default=default_mb, help="target shard size in MiB")
    cfg("retry_errors", action="store_true")
    p.add_argument("--no-ray", action="store_true", help="run in this process without Ray")
    add_ray_address_flag(p)


def build(args: argparse.Namespace) -> PreprocessConfig:
    return PreprocessConfig(**cli.field_values(PreprocessConfig, args, shard_bytes=int(args.shard_mb * 2**20)))


def check(cfg: PreprocessConfig) -> None:
    """Before Ray starts or anything is written: the output can be written and the input names videos."""
    from preprocessing.sources import collect_tasks
    from services import storage
    from services.video_read import VIDEO_EXTENSIONS

    checks.writable_storage("--output", cfg.output, cfg.endpoint)
    glob_root = re.split(r"[*?\[]", cfg.input)[0]  # videos/*.mp4: the folder videos/
    checks.not_an_input("--output", cfg.output, {"--input": glob_root, "--video-dir": cfg.video_dir})
    from preprocessing.dataset_writer import changed_settings

    with cli.user_input("--output"):  # a damaged manifest of the dataset to resume
        changed = changed_settings(cfg)
    if changed:  # a re-run resumes: finished videos are not made again with these
        raise cli.UserError(f"--output {cfg.output}: holds a dataset made with other settings ({'; '.join(changed)}); "
                            f"choose a new --output, or the same settings to resume or extend it")
    if cfg.input == "synthetic" or cfg.input.startswith("synthetic:"):
        count = cfg.input.partition(":")[2] or "1"
        if not count.isdigit() or int(count) < 1:
            raise cli.UserError(f"--input {cfg.input}: expected synthetic or synthetic:N with N ≥ 1")
        return
    checks.storage_reachable("--input", cfg.input, cfg.endpoint)
    if not storage.is_remote(cfg.input) and not any(c in cfg.input for c in "*?[") and not Path(cfg.input).exists():
        raise cli.UserError(f"--input {cfg.input}: no such folder or file (expected a folder, glob or metadata CSV "
                            "of videos)")
    if not storage.is_remote(cfg.input):
        checks.file_or_folder("--input", cfg.input, "a folder, glob or metadata CSV of videos")
    from preprocessing.shards import MANIFEST_NAME

    if storage.exists(storage.join(cfg.input, MANIFEST_NAME), cfg.endpoint):  # its _work/ copies would be found
        raise cli.UserError(f"--input {cfg.input}: a dataset preprocess made (it holds {MANIFEST_NAME}): give the raw "
                            "videos here, or this folder to train and evaluate as --data")
    with cli.user_input("--input"):
        tasks = collect_tasks(cfg)
    if len(tasks) == 1 and tasks[0].path == cfg.input:  # the input is one video (not a folder, glob or CSV of them)
        one_video(cfg)
    if not tasks:
        raise cli.UserError(f"--input {cfg.input}: no videos (expected a folder, glob or metadata CSV of "
                            f"{', '.join(VIDEO_EXTENSIONS)} files, folders of .png/.jpg frames named like them, "
                            "or .png/.jpg images of square frames side by side)")


def one_video(cfg: PreprocessConfig) -> None:
    """An --input of one file is a video (a config or an image given there started Ray, then failed as a clip):
    a local one opens and has frames to make a clip of; an s3:// one has a video's extension. Its folder is not the
    --output: the dataset would be written among the raw videos, and the folder read as a dataset."""
    from services import storage
    from services.video_read import VIDEO_EXTENSIONS, VideoError, probe_video

    path, expected = cfg.input, "expected a video, or a folder, glob or metadata CSV of videos"
    if checks.same_place(cfg.output, path.rsplit("/", 1)[0] if "/" in path else "."):
        raise cli.UserError(f"--output {cfg.output}: is the folder of --input {path} (the dataset would be written "
                            "among the raw videos, and that folder read as a dataset: choose a new folder)")
    if storage.is_remote(path):
        if not path.lower().endswith(VIDEO_EXTENSIONS):
            raise cli.UserError(f"--input {path}: not a video file name ({expected}: {', '.join(VIDEO_EXTENSIONS)})")
        return
    try:
        frames = probe_video(path).num_frames
    except VideoError as err:
        raise cli.UserError(f"--input {err} ({expected})") from None
    if frames < 2:
        raise cli.UserError(f"--input {path}: one frame only, a still image ({expected})")


def run(cfg: PreprocessConfig, args: argparse.Namespace) -> Summary:
    if args.no_ray:
        from preprocessing.dataset_writer import run_local

        result = run_local(cfg)
    else:
        from preprocessing.ray_jobs import run_preprocess

        result = run_preprocess(cfg, address=args.ray_address)
    if not result["num_clips"]:  # a job that made nothing has failed: no lines naming a manifest never written
        return Summary(status=cli.USER_ERROR_STATUS, problem=f"preprocess: error: --output {cfg.output}: no clips "
                                                             f"were made ({why_nothing(cfg, result)})",
                       kept_nothing=not result["num_errors"])  # else its line names their error table there
    return Summary({"shards": f"{result['shards']} ({result['num_shards']} files, {result['num_clips']} clips, "
                              f"{result['num_frames']} frames)",
                    "manifest": result["manifest"], "errors": f"{result['errors']} ({result['num_errors']} failed "
                    "videos)", "S3 retries": result["s3_retries"], "result": json.dumps(result, sort_keys=True)})


def why_nothing(cfg: PreprocessConfig, result: dict) -> str:
    """What the videos of a run without clips came to: failures (in the error table), or no track kept."""
    from preprocessing.sources import metadata_csv

    failed, rest = result["num_errors"], result["num_videos"]  # the manifest counts the videos read apart
    parts = [f"{failed} of {failed + rest} videos failed: {result['errors']}"] if failed else []
    if rest and metadata_csv(cfg.input):
        parts.append(f"no row of the {'other ' if failed else ''}{rest} videos named ≥ {cfg.min_frames} frames "
                     f"(--min-frames) inside its video, at ≥ {cfg.min_size} px (--min-size): check each row's start "
                     "and end (frames at its fps) against its video's length")
    elif rest:
        held = "has" if cfg.kind == "none" else f"held a {cfg.kind} track of"
        parts.append(f"none of the {'other ' if failed else ''}{rest} videos {held} ≥ {cfg.min_frames} frames "
                     f"(--min-frames) of ≥ {cfg.min_size} px (--min-size)"
                     + ("; --kind none keeps the whole frame" if cfg.kind != "none" else ""))
    return "; ".join(parts)


def keeps(cfg: PreprocessConfig) -> dict[str, str]:
    """A failed run keeps its finished videos (_work/parts) under --output: the same command goes on from there."""
    from services import storage

    return {} if storage.is_remote(cfg.output) else {cfg.output: "rerun the same command to resume (finished "
                                                                 "videos are skipped)"}


STAGE = Stage("preprocess", __doc__, add_flags, build, check, run, keeps)
main, parse_args = STAGE.main, STAGE.parse_args


if __name__ == "__main__":
    sys.exit(main())
