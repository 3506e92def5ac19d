"""Resumable dataset writing: per-video part files, then deterministic shards, the manifest and the error table.

Layout of a dataset root (local or s3://):
    shards/<split>/shard-00000.parquet   clips, packed to about cfg.shard_bytes, videos in id order
    _manifest.json                       shards with rows, bytes, SHA-256 and videos; per-video outcome
    errors.parquet                       path, video_id, stage, message of every video that failed
    _work/parts/<video>.parquet          one finished video's clips (removed once in a shard)
    _work/errors/<video>.json            one failed video (removed once in errors.parquet)
Every file is written whole (temporary + rename, or one S3 PUT). A video with a part or error file is finished:
a re-run skips it. Shards are packed from parts in video-id order and the manifest is written last, so an
interrupted run, re-run, gives byte-identical shards."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import posixpath
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from preprocessing import shards
from preprocessing.config import PreprocessConfig
from preprocessing.process import StageError, detector_for, process_video
from preprocessing.shards import CLIP_SCHEMA, ERROR_SCHEMA, MANIFEST_NAME
from preprocessing.sources import VideoTask, collect_tasks
from services import s3_retries, storage
from services.atomic import held_alone
from services.cli import user_path
from services.fields import RULE, flag_of

PART_META_KEY = b"fomm_part"


class Layout(storage.Location):
    """Paths of a dataset root; its filesystem is resolved in each process that uses it (nothing secret pickled)."""

    def __init__(self, root: str, endpoint: str | None = None) -> None:
        super().__init__(root.rstrip("/"), endpoint)

    def list(self, *parts: str, hidden: bool = False) -> list[str]:
        """Paths of the files under a folder, sorted; temporaries (dot names) only when `hidden`."""
        p = self.path(*parts)
        if not self.fs.isdir(p):
            return []
        return sorted(f for f in self.fs.find(p) if hidden or not posixpath.basename(f).startswith("."))


def video_key(video_id: str) -> str:
    """A file name for a video id: readable, and unique even when ids differ only in unsafe characters."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", video_id)[:80].lstrip(".")  # a dot first: a hidden file, never listed
    return f"{safe}-{hashlib.sha1(video_id.encode()).hexdigest()[:10]}"


def write_part(layout: Layout, task: VideoTask, records: list[shards.ClipRecord], cfg: PreprocessConfig) -> None:
    """One finished video's clips (all of its split) with, in the file's metadata, rows and frame bytes per split
    and the clip settings they were made with."""
    nbytes = sum(len(b) for r in records for b in r.frames)
    meta = {"video_id": task.video_id, "split": task.split, "splits": {task.split: [len(records), nbytes]} if records
            else {}, "frames": sum(r.num_frames for r in records),
            "settings": {k: getattr(cfg, k) for k in CLIP_SETTINGS}}
    table = shards.records_to_table(records).replace_schema_metadata({PART_META_KEY: json.dumps(meta).encode()})
    shards.write_table_atomic(table, layout.path("_work", "parts", video_key(task.video_id) + ".parquet"),
                              fs=layout.fs)


def write_error(layout: Layout, task: VideoTask, stage: str, message: str) -> None:
    row = {"path": task.path or task.video_id, "video_id": task.video_id, "stage": stage, "message": message}
    storage.write_bytes(layout.path("_work", "errors", video_key(task.video_id) + ".json"),
                        json.dumps(row).encode(), fs=layout.fs)


def run_video(task: VideoTask, cfg: PreprocessConfig, layout: Layout, detector=None) -> None:  # noqa: ANN001
    """Process one video and record the outcome (part file or error file); never raises for bad data."""
    if task.missing:
        return write_error(layout, task, "missing", task.missing)
    try:
        with storage.local_copy(task.path, cfg.endpoint) as local:
            records = process_video(local, cfg, task, detector=detector)
    except StageError as e:
        return write_error(layout, task, e.stage, str(e))
    except storage.StorageError as e:
        return write_error(layout, task, "read", str(e))
    write_part(layout, task, records, cfg)


def _part_meta(layout: Layout, path: str) -> dict | None:
    """A part file's metadata; None for a damaged one (parts are written whole: a cut or overwritten one was a
    vague line naming no file), which is removed so that its video is made again."""
    try:
        return json.loads(pq.read_schema(path, filesystem=layout.fs).metadata[PART_META_KEY])
    except (pa.ArrowInvalid, KeyError, TypeError, ValueError) as err:  # not S3's OSError: a good part stays
        print(f"note: {path}: a damaged work file ({str(err).splitlines()[0][:100]}): removed, its video "
              "is made again", flush=True)
        layout.fs.rm(path)
        return None


def _parts(layout: Layout) -> list[tuple[dict, str]]:
    """(metadata, path) of every finished video's part file (a damaged one removed: see _part_meta)."""
    return [(meta, p) for p in layout.list("_work", "parts") if (meta := _part_meta(layout, p)) is not None]


def _errors(layout: Layout) -> list[tuple[dict, str]]:
    """(error row, path) of every failed video's error file."""
    return [(json.loads(layout.fs.cat_file(p)), p) for p in layout.list("_work", "errors")]


def _manifest(layout: Layout) -> dict | None:
    return shards.read_manifest(layout.url, layout.endpoint) if layout.fs.exists(layout.path(MANIFEST_NAME)) else None


def finished_videos(layout: Layout, include_errors: bool = True) -> set[str]:
    """Ids of videos whose outcome is already recorded (in the manifest, the error table or a work file)."""
    done = set((_manifest(layout) or {}).get("videos", {})) | {m["video_id"] for m, _ in _parts(layout)}
    if include_errors:
        done |= {r["video_id"] for r in shards.read_errors(layout.url, layout.endpoint)}
        done |= {e["video_id"] for e, _ in _errors(layout)}
    return done


@dataclasses.dataclass
class ShardPlan:
    """One shard to write: which parts (in order) contribute rows of `split`."""

    file: str
    split: str
    parts: list[str] = dataclasses.field(default_factory=list)  # part paths inside the filesystem
    videos: list[str] = dataclasses.field(default_factory=list)
    rows: int = 0
    bytes: int = 0


def plan_shards(layout: Layout, shard_bytes: int, manifest: dict | None) -> tuple[list[ShardPlan], list[dict]]:
    """Pack pending parts into shards (per split, video-id order, ≤ shard_bytes unless one video is larger)."""
    known = set((manifest or {}).get("videos", {}))
    metas = sorted(((m, p) for m, p in _parts(layout) if m["video_id"] not in known),
                   key=lambda m: m[0]["video_id"])
    existing = (manifest or {}).get("shards", [])
    plans: list[ShardPlan] = []
    for split in sorted({s for m, _ in metas for s in m["splits"]}):
        index = sum(1 for s in existing if s["split"] == split)
        current: ShardPlan | None = None
        for meta, path in metas:
            if split not in meta["splits"]:
                continue
            rows, nbytes = meta["splits"][split]
            if current is None or (current.rows and current.bytes + nbytes > shard_bytes):
                current = ShardPlan(file=f"{shards.SHARDS_DIR}/{split}/shard-{index:05d}.parquet", split=split)
                plans.append(current)
                index += 1
            current.parts.append(path)
            current.videos.append(meta["video_id"])
            current.rows += rows
            current.bytes += nbytes
    return plans, [m for m, _ in metas]


def assemble_shard(layout: Layout, plan: ShardPlan) -> dict:
    """Concatenate a plan's part rows of its split into one shard file, written atomically."""
    import pyarrow.compute as pc

    table = pa.concat_tables([shards.read_table(p, fs=layout.fs).replace_schema_metadata(None)
                              for p in plan.parts]).cast(CLIP_SCHEMA)
    table = table.filter(pc.equal(table["split"], plan.split))
    info = shards.write_table_atomic(table, layout.path(plan.file), fs=layout.fs)
    frames = int(pc.sum(table["num_frames"]).as_py() or 0)
    return {"file": plan.file, "split": plan.split, **info, "frames": frames, "videos": plan.videos}


def commit(layout: Layout, cfg: PreprocessConfig, metas: list[dict], written: list[dict],
           earlier: dict | None) -> dict:
    """Record a run: the error table, then the manifest (the commit point), then remove the work files. A run that
    made no clip into a new output commits no manifest (only the error table, if a video failed): a re-run with
    other settings is a fresh start, not a dataset of other settings. `earlier`: the manifest there before."""
    manifest = earlier or {"version": shards.SCHEMA_VERSION, "shards": [], "videos": {}}
    new_errors = [e for e, _ in _errors(layout)]
    retried = {m["video_id"] for m in metas} | {e["video_id"] for e in new_errors}
    old_errors = [e for e in shards.read_errors(layout.url, layout.endpoint) if e["video_id"] not in retried]
    errors = sorted(old_errors + new_errors, key=lambda e: e["video_id"])
    made = earlier is not None or bool(written)
    if made or errors:
        shards.write_table_atomic(pa.Table.from_pylist(errors, schema=ERROR_SCHEMA),
                                  layout.path(shards.ERRORS_NAME), fs=layout.fs)
    videos = dict(manifest.get("videos", {}))
    for m in metas:
        videos[m["video_id"]] = {"split": m["split"], "clips": sum(r for r, _ in m["splits"].values()),
                                 "frames": m["frames"]}
    for e in errors:
        videos.pop(e["video_id"], None)
    all_shards = sorted(manifest.get("shards", []) + written, key=lambda s: s["file"])

    def counts(of: list[dict]) -> dict:
        return {"clips": sum(s["rows"] for s in of), "frames": sum(s.get("frames", 0) for s in of), "shards": len(of)}

    splits = dict.fromkeys(s["split"] for s in all_shards)  # in file order
    per_split = {sp: counts([s for s in all_shards if s["split"] == sp]) for sp in splits}
    manifest.update({
        "version": shards.SCHEMA_VERSION, "schema": CLIP_SCHEMA.names, "frame_format": cfg.frame_format,
        "size": cfg.size, "kind": cfg.kind, "shards": all_shards, "videos": dict(sorted(videos.items())),
        "totals": {**counts(all_shards), "videos": len(videos), "errors": len(errors), "splits": per_split},
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "workers"},
    })
    if made:
        storage.write_bytes(layout.path(MANIFEST_NAME), json.dumps(manifest, indent=1).encode(), fs=layout.fs)
    cleanup(layout, manifest, committed=set(videos) | {e["video_id"] for e in errors})
    return manifest


def cleanup(layout: Layout, manifest: dict, committed: set[str]) -> None:
    """Remove the work files of `committed` videos, shard files the manifest does not list, stale temporaries."""
    for meta, path in _parts(layout) + _errors(layout):
        if meta["video_id"] in committed:
            layout.fs.rm_file(path)
    for info in layout.list("_work", "parts", hidden=True) + layout.list("_work", "errors", hidden=True):
        if posixpath.basename(info).startswith("."):
            layout.fs.rm_file(info)  # a temporary of a killed writer
    for sub in (("_work", "parts"), ("_work", "errors"), ("_work",)):  # empty folders (and S3 markers) go too
        if layout.fs.isdir(layout.path(*sub)) and not layout.list(*sub, hidden=True):
            layout.fs.rm(layout.path(*sub), recursive=True)
    listed = {layout.path(s["file"]) for s in manifest.get("shards", [])}
    for info in layout.list(shards.SHARDS_DIR, hidden=True):
        if info not in listed:
            layout.fs.rm_file(info)  # half-finished runs' shards or temporaries


def finalize(layout: Layout, cfg: PreprocessConfig, assemble=None) -> dict:  # noqa: ANN001
    """Pack pending parts into shards (with `assemble`, e.g. a Ray map, or serially) and commit."""
    plans, metas = plan_shards(layout, cfg.shard_bytes, earlier := _manifest(layout))
    written = assemble(plans) if assemble is not None else [assemble_shard(layout, p) for p in plans]
    return commit(layout, cfg, metas, sorted(written, key=lambda s: s["file"]), earlier)


def summarize(layout: Layout, manifest: dict) -> dict:
    """What a run prints and returns: where everything is, and the counts."""
    t = manifest.get("totals", {})
    return {"output": layout.url, "shards": layout.uri(shards.SHARDS_DIR), "manifest": layout.uri(MANIFEST_NAME),
            "errors": layout.uri(shards.ERRORS_NAME), "num_shards": t.get("shards", 0), "num_clips": t.get("clips", 0),
            "num_frames": t.get("frames", 0), "num_videos": t.get("videos", 0), "num_errors": t.get("errors", 0),
            "splits": t.get("splits", {})}


# what a clip depends on: a re-run into the same --output with other values would mix two kinds of clips
CLIP_SETTINGS = ("kind", "size", "detector", "detect_every", "iou_threshold", "max_missed", "cut_threshold", "margin",
                 "min_frames", "min_size", "max_clip_frames", "max_frames", "target_fps", "frame_format", "quality",
                 "test_fraction", "synthetic_size", "synthetic_frames", "seed")


def changed_settings(cfg: PreprocessConfig) -> list[str]:
    """How `cfg` differs in CLIP_SETTINGS from the dataset already at its output (none: it resumes or extends it):
    from its manifest, or, for a run stopped before its manifest, from its first finished video's part file."""
    layout = Layout(cfg.output, cfg.endpoint)
    first = next(filter(None, (_part_meta(layout, p) for p in layout.list("_work", "parts"))), None)
    made = (_manifest(layout) or {}).get("config") or (first.get("settings") if first else None)
    old = made or {}  # nothing made yet, or parts written before they recorded their settings
    rules = {f.name: f.metadata.get(RULE) for f in dataclasses.fields(cfg)}
    return [f"{flag_of(k, rules[k]) if rules[k] else k} {old[k]!r}, now {getattr(cfg, k)!r}"
            for k in CLIP_SETTINGS if k in old and old[k] != getattr(cfg, k)]


def pending(cfg: PreprocessConfig) -> tuple[Layout, list[VideoTask]]:
    """The dataset root, and the input's videos whose outcome is not recorded there yet."""
    layout, tasks = Layout(cfg.output, cfg.endpoint), collect_tasks(cfg)
    done = finished_videos(layout, include_errors=not cfg.retry_errors)
    return layout, [t for t in tasks if t.video_id not in done]


def writing_alone(cfg: PreprocessConfig) -> contextlib.AbstractContextManager:
    """One preprocess run at a time writes a local --output: a second's merge found the first's parts gone (a
    traceback, exit 1). An flock (services.atomic.held_alone); S3 has no lock."""
    if storage.is_remote(cfg.output):
        return contextlib.nullcontext()
    return held_alone(Path(user_path(cfg.output)) / ".preprocess.lock", f"--output {cfg.output}: a preprocess run is writing "
                      "there now", "wait for it to end, or choose another --output")


def run_local(cfg: PreprocessConfig) -> dict:
    """The whole job in this process, without Ray (small inputs, tests, debugging)."""
    with writing_alone(cfg), s3_retries.counting_retries() as retries:
        layout, todo = pending(cfg)
        detector = detector_for(cfg) if any(not t.segments for t in todo) else None
        for task in todo:
            run_video(task, cfg, layout, detector)
        summary = summarize(layout, finalize(layout, cfg))
    return {**summary, "s3_retries": retries.count}
