"""Inputs (a folder or glob of videos, a VoxCeleb / Tai-Chi-HD metadata CSV, the synthetic set) → VideoTasks.

A metadata CSV has video_id, start, end, bbox ("left-top-right-bottom"), fps, width, height (and partition,
person_id): frame numbers at its fps, a box in a width×height frame, both rescaled to the raw video found."""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from preprocessing.config import PreprocessConfig
from services import storage, user_csv
from services.video_read import FRAME_EXTENSIONS, VIDEO_EXTENSIONS, strip_frames

METADATA_CSV = "metadata.csv"


@dataclass(frozen=True)
class Segment:
    """One clip that a metadata CSV asks for: frames [start, end) at `fps`, bbox in a width×height frame."""

    start: int
    end: int
    bbox: tuple[int, int, int, int]
    fps: float
    width: int
    height: int


@dataclass
class VideoTask:
    """One raw video to process, with what the input says about it."""

    video_id: str
    path: str  # local path or s3:// URI; empty when the raw video is missing
    person_id: str
    split: str
    segments: list[Segment] = field(default_factory=list)  # empty: detect and track instead
    missing: str = ""  # why the raw video could not be found


def hash_split(video_id: str, test_fraction: float) -> str:
    """A split that depends only on the id: stable across runs and machines."""
    h = int.from_bytes(hashlib.sha256(video_id.encode()).digest()[:8], "big") / 2**64
    return "test" if h < test_fraction else "train"


def folder_tasks(paths: list[str], root: str, cfg: PreprocessConfig) -> list[VideoTask]:
    """Tasks of video files under root; a metadata.csv beside them (as the synthetic set writes) gives, by video_id
    or file name, each one's person_id and split."""
    side, table = {}, storage.join(root, METADATA_CSV)
    if storage.exists(table, cfg.endpoint):
        rows = user_csv.csv_table(storage.read_bytes(table, cfg.endpoint))[1]
        side = {key: r for r in rows for key in (r.get("video_id"), Path(r.get("file") or "").stem) if key}
    tasks = []
    for p in paths:
        if not p.isascii() and any("\udc80" <= c <= "\udcff" for c in p):  # undecodable bytes, kept by the OS
            raise ValueError(f"{os.fsencode(p).decode(errors='backslashreplace')}: a file name that is not UTF-8 "
                             "(a clip's ids and paths are stored as text: rename the file)")
        inside = p[len(root):].strip("/") if p.startswith(root) else ""
        parts = inside.split("/") if inside else [PurePosixPath(p).name]  # relative path (root itself: its name)
        vid = "__".join(parts).rsplit(".", 1)[0]
        meta = side.get(vid) or side.get(Path(p).stem) or {}
        split = meta.get("split") or (parts[0] if len(parts) > 1 and parts[0] in ("train", "test") else "")
        tasks.append(VideoTask(video_id=vid, path=p, person_id=meta.get("person_id") or vid,
                               split=split or hash_split(vid, cfg.test_fraction)))
    return tasks


def frame_folders(files: list[str]) -> list[str]:
    """The folders among listed files that hold .png/.jpg frames and are named like a video: the original FOMM's
    png datasets (train/id10001#7w0IBEWc9Qw#000993#001143.mp4/0000000.png); a folder of other pictures is none."""
    folders = {f.rsplit("/", 1)[0] for f in files if f.lower().endswith(FRAME_EXTENSIONS) and "/" in f}
    return sorted(f for f in folders if f.lower().endswith(VIDEO_EXTENSIONS))


def strip_images(files: list[str], endpoint: str | None) -> list[str]:
    """The .png/.jpg files among listed ones, outside frame folders, that hold square frames side by side (the
    original FOMM's one-image clips, e.g. its BAIR set); a picture of other proportions is no video. Read from their
    headers: on S3 the first 64 KiB of each, in one concurrent batch."""
    folders = set(frame_folders(files))
    images = [f for f in files if f.lower().endswith(FRAME_EXTENSIONS) and f.rsplit("/", 1)[0] not in folders]
    if not images or not storage.is_remote(images[0]):
        return [f for f in images if strip_frames(f)]
    fs = storage.resolve(images[0], endpoint)[0]
    heads = fs.cat_ranges([storage.resolve(f, endpoint)[1] for f in images], 0, 1 << 16)
    return [f for f, head in zip(images, heads) if strip_frames(f, head)]


def raw_video_index(video_dir: str, endpoint: str | None) -> dict[str, str]:
    """video id → raw video path in video_dir (first of VIDEO_EXTENSIONS[:5] when several), from one listing:
    a lookup per id would cost 5 requests each (100k for VoxCeleb's 20k ids, every one a round trip on S3)."""
    if not storage.is_dir(video_dir, endpoint):
        return {}
    fs, root = storage.resolve(video_dir, endpoint)
    names = [PurePosixPath(n).name for n in fs.ls(root, detail=False) if not PurePosixPath(n).name.startswith(".")]
    found: dict[str, str] = {}
    for ext in reversed(VIDEO_EXTENSIONS[:5]):  # an earlier extension overwrites a later one
        found.update({n[:-len(ext)]: storage.join(video_dir, n) for n in names if n.endswith(ext)})
    return found


def segment_problem(s: Segment) -> str | None:
    """Why a metadata row names no clip (empty frame range, box without area or outside its frame), else None."""
    if len(s.bbox) != 4:
        return f"bbox {'-'.join(map(str, s.bbox))} is not 4 numbers (expected left-top-right-bottom)"
    if not (math.isfinite(s.fps) and s.fps > 0):
        return f"fps {s.fps} is not a positive number"
    left, top, right, bottom = s.bbox
    if s.start < 0 or s.end <= s.start:
        return f"frame range start {s.start}, end {s.end} is empty or reversed"
    if right <= left or bottom <= top:
        return f"bbox {left}-{top}-{right}-{bottom} has no area (expected left-top-right-bottom)"
    if s.width > 0 and s.height > 0 and (right <= 0 or bottom <= 0 or left >= s.width or top >= s.height):
        return f"bbox {left}-{top}-{right}-{bottom} is outside the {s.width}×{s.height} frame"
    return None


def csv_tasks(csv_path: str, cfg: PreprocessConfig) -> list[VideoTask]:
    """Tasks from a VoxCeleb / Tai-Chi-HD metadata CSV; raw videos looked up as <video_dir>/<video_id>.<ext>."""
    rows = user_csv.csv_table(storage.read_bytes(csv_path, cfg.endpoint))[1]
    required = {"video_id", "start", "end", "bbox"}
    if not rows or not required <= set(rows[0]):
        raise ValueError(f"{csv_path}: not a metadata CSV (needs columns {sorted(required)}, "
                         f"has {sorted(rows[0]) if rows else 'no rows'})")
    video_dir = cfg.video_dir or csv_path.rsplit("/", 1)[0]
    tasks, raw_videos = [], raw_video_index(video_dir, cfg.endpoint)
    numbered = sorted(enumerate(rows, start=2), key=lambda lr: lr[1]["video_id"])  # (its line in the file, row)
    for vid, group in itertools.groupby(numbered, key=lambda lr: lr[1]["video_id"]):
        numbered_rows = list(group)
        rs = [r for _, r in numbered_rows]
        segs = []
        for line, r in numbered_rows:
            where = f"{csv_path} line {line} (video {vid})"
            if (width := user_csv.ragged_row(r)) is not None:
                raise ValueError(f"{where}: not the header's {width} fields")
            try:
                bbox = tuple(int(v) for v in r["bbox"].split("-"))
            except ValueError:
                raise ValueError(f"{where}: bbox {r['bbox']!r} is not 4 whole numbers (expected "
                                 "left-top-right-bottom, e.g. 112-54-374-316)") from None
            try:
                segs.append(Segment(start=int(r["start"]), end=int(r["end"]), bbox=bbox,  # type: ignore[arg-type]
                                    fps=float(r.get("fps") or 0) or 25.0, width=int(r.get("width") or 0),
                                    height=int(r.get("height") or 0)))
            except (ValueError, KeyError) as e:
                raise ValueError(f"{where}: bad value ({e})") from e
            if problem := segment_problem(segs[-1]):  # refused whole: a row must never vanish unreported
                raise ValueError(f"{where}: {problem}")
        raw = raw_videos.get(vid)
        missing = "" if raw else f"raw video not found: {storage.join(video_dir, vid)}.{{{','.join(e[1:] for e in VIDEO_EXTENSIONS[:5])}}}"
        split = rs[0].get("partition") or hash_split(vid, cfg.test_fraction)
        tasks.append(VideoTask(video_id=vid, path=raw or "", person_id=rs[0].get("person_id") or vid, split=split,
                               segments=sorted(segs, key=lambda s: (s.start, s.end)), missing=missing))
    return tasks


def synthetic_tasks(spec: str, cfg: PreprocessConfig) -> list[VideoTask]:
    """Generate the built-in synthetic set ("synthetic" or "synthetic:N") into a local folder, then list it."""
    from preprocessing.synthetic import generate_synthetic_videos

    n = int(spec.split(":", 1)[1]) if ":" in spec else cfg.synthetic_videos
    root = Path(cfg.output) / "_work" / "synthetic_raw" if not storage.is_remote(cfg.output) else \
        Path(tempfile.gettempdir()) / f"fomm-synthetic-{cfg.seed}-{n}-{cfg.synthetic_size}-{cfg.synthetic_frames}"
    if not (root / METADATA_CSV).is_file():
        generate_synthetic_videos(root, num_videos=n, size=cfg.synthetic_size, num_frames=cfg.synthetic_frames,
                                  seed=cfg.seed)
    paths = sorted(str(p) for p in root.glob("*.mp4"))
    return folder_tasks(paths, str(root), cfg)


def metadata_csv(spec: str) -> bool:
    """Whether --input is a metadata CSV (VoxCeleb's, Tai-Chi-HD's): its rows name each clip."""
    return spec.lower().endswith(".csv")


def collect_tasks(cfg: PreprocessConfig) -> list[VideoTask]:
    """All videos named by cfg.input, sorted by video_id (ids must be unique)."""
    spec = cfg.input
    if spec == "synthetic" or spec.startswith("synthetic:"):
        tasks = synthetic_tasks(spec, cfg)
    elif metadata_csv(spec):
        tasks = csv_tasks(spec, cfg)
    elif any(c in spec for c in "*?["):
        matched = storage.glob(spec, cfg.endpoint)
        paths = [p for p in matched if p.lower().endswith(VIDEO_EXTENSIONS)] + strip_images(matched, cfg.endpoint)
        root = spec.split("*")[0].rsplit("/", 1)[0]
        tasks = folder_tasks(paths, root, cfg)
    elif storage.is_dir(spec, cfg.endpoint):
        root = spec if storage.is_remote(spec) else storage.resolve(spec)[1]
        files = storage.list_files(root, endpoint=cfg.endpoint)
        paths = [p for p in files if p.lower().endswith(VIDEO_EXTENSIONS)] + frame_folders(files) + \
            strip_images(files, cfg.endpoint)
        tasks = folder_tasks(paths, root, cfg)
    elif storage.exists(spec, cfg.endpoint):
        tasks = folder_tasks([spec], spec.rsplit("/", 1)[0], cfg)
    else:
        raise FileNotFoundError(f"input {spec!r}: no such folder, file or CSV, and the glob matched nothing")
    tasks.sort(key=lambda t: t.video_id)
    for a, b in itertools.pairwise(tasks):
        if a.video_id == b.video_id:
            raise ValueError(f"input {spec!r}: two videos share the id {a.video_id!r}: {a.path} and {b.path}")
    return tasks
