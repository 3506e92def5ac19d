"""The evaluation job: Ray Data map_batches over test clips → per-frame rows → Parquet, report and MLflow run."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from evaluation import runner
from evaluation.report import metric_table_text, write_report
from evaluation.scoring import Extractors, labelled, metric_keys
from services.tracking.run import Tracker

READ_COLUMNS = ["video_id", "clip_id", "person_id", "split", "fps", "frames"]


@dataclass
class EvalResult:
    """What an evaluation produced: figures, where the files went, the MLflow run."""

    run_id: str
    aggregate: dict[str, float]  # plain keys: l1, akd, ... (+ *_frames, num_videos, num_frames)
    metrics: dict[str, float]  # as logged: backend-labelled keys, e.g. 'akd/dlib-68'
    labels: dict[str, str]
    table: str
    out_dir: str
    report: dict[str, str] = field(default_factory=dict)
    per_video: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    frames_per_second: float = 0.0
    num_clips: int = 0  # clips selected; each failed one has a row in `errors`
    s3_retries: int = 0  # S3 requests this process retried (all of them in-process; the driver's with Ray workers)

    def error_problem(self, max_error_fraction: float = 0.0) -> str | None:
        """Why the failed clips fail the run (their share is above `max_error_fraction`), or None."""
        share = len(self.errors) / self.num_clips if self.num_clips else 0.0
        if not self.errors or share <= max_error_fraction:
            return None
        return (f"errors: {len(self.errors)} of {self.num_clips} clips failed ({share:.0%} > --max-error-fraction "
                f"{max_error_fraction:.0%}): {summarize_errors(self.errors)}")


def summarize_errors(errors: list[dict], limit: int = 3) -> str:
    """The commonest error messages with their counts and first clips, on one line."""
    groups: dict[str, list[str]] = {}
    for row in errors:
        message = str(row.get("error") or "unknown error").split(" | ")[0]
        groups.setdefault(message, []).append(str(row.get("clip_id")))
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    parts = [f"{len(clips)}× {message} (e.g. {clips[0]})" for message, clips in ranked[:limit]]
    if len(ranked) > limit:
        parts.append(f"{len(ranked) - limit} more kinds")
    return "; ".join(parts)


def frame_schema(keys: list[str]) -> pa.Schema:
    return pa.schema([("video_id", pa.string()), ("clip_id", pa.string()), ("person_id", pa.string()),
                      ("frame", pa.int64()), *[(k, pa.float64()) for k in keys], ("error", pa.string())])


class EvaluateClips:
    """Ray Data actor: loads the model and extractors once, then reconstructs and scores clip rows."""

    def __init__(self, cfg: runner.EvalConfig, selected: list[str], threads: int = 1) -> None:
        import torch

        from evaluation.reconstruction import load_model
        from services import storage

        torch.set_num_threads(max(1, threads))
        self.cfg, self.selected = cfg, set(selected)
        if cfg.checkpoint is not None and storage.is_remote(cfg.checkpoint):
            with storage.local_copy(cfg.checkpoint, cfg.endpoint) as local:
                self.model = load_model(cfg.config_path, local, cfg.device)
        else:
            self.model = load_model(cfg.config_path, cfg.checkpoint, cfg.device)
        self.extractors, _ = runner.build_extractors(cfg)
        self.schema = frame_schema(metric_keys(self.extractors))

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = [r for r in batch.to_pylist() if r["clip_id"] in self.selected]
        out = runner.evaluate_clips(rows, self.model, self.extractors, self.cfg.batch_size, self.cfg.device)
        return pa.Table.from_pylist(out, schema=self.schema)


def init_ray(address: str | None, workers: int, cpus_per_worker: float = 1.0) -> None:
    """Connect to a Ray cluster (argument, $RAY_ADDRESS) or start a local one, where an actor's CPUs fit a node;
    nothing when workers == 0."""
    if workers == 0:
        return
    from services.ray_start import check_room, ensure_ray

    ensure_ray(address, log_to_driver=False)
    check_room("--cpus-per-worker", "CPU", cpus_per_worker)


def select_clips(cfg: runner.EvalConfig) -> list[dict]:
    """The clips to evaluate (metadata only, shard order): the split, then the first `max_videos`."""
    from preprocessing.shards import read_clips

    clips = []
    for clip in read_clips(cfg.data, split=cfg.split, columns=["video_id", "clip_id", "person_id", "split"],
                           endpoint=cfg.endpoint, decode=False):
        clips.append({"video_id": clip.video_id, "clip_id": clip.clip_id, "person_id": clip.person_id})
        if cfg.max_videos is not None and len(clips) >= cfg.max_videos:
            break
    if not clips:
        raise ValueError(f"{cfg.data}: no clips" + (f" in split {cfg.split!r}" if cfg.split else ""))
    return clips


def read_clip_rows(cfg: runner.EvalConfig, clip_ids: list[str]) -> list[dict]:
    """Full shard rows (frames included) of the given clips, read on this process."""
    from preprocessing.shards import list_shards, read_table

    wanted, rows = set(clip_ids), []
    for shard in list_shards(cfg.data, cfg.split, cfg.endpoint):
        table = read_table(shard, columns=READ_COLUMNS, endpoint=cfg.endpoint,
                           filters=[("clip_id", "in", sorted(wanted))])
        rows.extend(r for r in table.to_pylist() if r["clip_id"] in wanted)
    order = {c: i for i, c in enumerate(clip_ids)}
    return sorted(rows, key=lambda r: order[r["clip_id"]])


def run_rows(cfg: runner.EvalConfig, clip_ids: list[str]) -> list[dict]:
    """Per-frame rows of all selected clips: on Ray Data actors, or in-process when num_workers == 0."""
    if cfg.num_workers == 0:
        actor = EvaluateClips(cfg, clip_ids, threads=int(cfg.cpus_per_worker))
        return actor(pa.Table.from_pylist(read_clip_rows(cfg, clip_ids))).to_pylist()
    import ray

    from preprocessing.shards import list_shards
    from services import storage

    init_ray(None, cfg.num_workers)
    cfg = replace(cfg, endpoint=storage.s3_endpoint(cfg.endpoint))  # workers: this endpoint
    shards = list_shards(cfg.data, cfg.split, cfg.endpoint)
    fs, _ = storage.resolve(shards[0], cfg.endpoint)
    paths = [storage.resolve(s, cfg.endpoint)[1] for s in shards]
    selected = set(clip_ids)
    ds = ray.data.read_parquet(paths, filesystem=fs, columns=READ_COLUMNS)
    # one clip per block, so that the actor pool spreads the videos (shards hold many clips per row group)
    ds = ds.filter(lambda row: row["clip_id"] in selected).repartition(len(clip_ids))
    ds = ds.map_batches(EvaluateClips, batch_size=1, batch_format="pyarrow",
                        fn_constructor_kwargs={"cfg": cfg, "selected": clip_ids,
                                               "threads": int(cfg.cpus_per_worker)},
                        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cfg.num_workers),
                        num_cpus=cfg.cpus_per_worker)
    return ds.take_all()


def write_parquet(rows: list[dict], path: str, schema: pa.Schema | None = None, endpoint: str | None = None) -> str:
    """Rows as one Parquet file, atomically (local or s3://)."""
    from services import storage

    table = pa.Table.from_pylist(rows, schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    storage.write_bytes(path, sink.getvalue(), endpoint=endpoint)
    return path


def _cases(cfg: runner.EvalConfig, videos: list[dict]) -> list[dict]:
    """Worst and best clips by L1, reconstructed again on the driver for the report."""
    from evaluation.reconstruction import load_model, reconstruct_video
    from preprocessing.shards import row_to_clip
    from services import storage

    if cfg.checkpoint is None:
        model = load_model(cfg.config_path, None, cfg.device)
    else:
        with storage.local_copy(cfg.checkpoint, cfg.endpoint) as local:
            model = load_model(cfg.config_path, local, cfg.device)
    ranked = sorted((v for v in videos if np.isfinite(v["l1"])), key=lambda v: v["l1"])
    n = min(cfg.report_cases, len(ranked) // 2 or len(ranked))
    picks = [("worst", v) for v in ranked[::-1][:n]] + [("best", v) for v in ranked[:n]]
    rows = {r["clip_id"]: r for r in read_clip_rows(cfg, [v["clip_id"] for _, v in picks])}
    cases = []
    for title, video in picks:
        result = reconstruct_video(model, row_to_clip(rows[video["clip_id"]]).frames, cfg.batch_size, cfg.device)
        cases.append({"title": title, "clip_id": video["clip_id"], "l1": video["l1"],
                      "real": result["real"], "prediction": result["prediction"]})
    return cases


def evaluate(cfg: runner.EvalConfig, model_config: dict | None = None) -> EvalResult:
    """Run the whole evaluation and log it to one MLflow run (FAILED if anything raises)."""
    from services import storage

    if model_config is None:  # the whole FOMM config file, logged under "fomm."
        import fomm

        model_config = fomm.load_config(cfg.config_path).to_dict()
    extractors, notes = runner.build_extractors(cfg)
    keys = metric_keys(extractors)
    labels = {k: labelled(k, extractors) for k in keys}
    described = extractors.describe()
    tags = {"fomm.kind": "evaluation", "fomm.domain": cfg.domain, **cfg.tags}
    with Tracker(cfg.tracking_uri, cfg.experiment, cfg.run_name, parent_run_id=cfg.parent_run_id,
                 tags=tags) as tracker, storage.counting_retries() as retries:
        checkpoint_id = _checkpoint_identity(cfg)
        tracker.log_config({"eval": cfg.to_dict(), "fomm": model_config})
        tracker.log_params({**described, **checkpoint_id})
        tracker.set_tags({"checkpoint.sha256": checkpoint_id["checkpoint.sha256"]})
        clips = select_clips(cfg)
        start = time.perf_counter()
        rows = run_rows(cfg, [c["clip_id"] for c in clips])
        elapsed = time.perf_counter() - start
        frame_rows, errors = runner.split_rows(rows)
        frame_rows.sort(key=lambda r: (r["clip_id"], r["frame"]))
        videos = runner.per_video(frame_rows, keys)
        aggregate = runner.aggregate_frames(frame_rows, keys)
        aggregate["num_errors"] = float(len(errors))
        fps = len(frame_rows) / elapsed if elapsed > 0 else 0.0
        logged = {labels.get(k, k): v for k, v in aggregate.items() if k in labels}
        logged.update({f"{labels[k]}_frames": aggregate[f"{k}_frames"] for k in keys})
        logged.update({k: aggregate[k] for k in ("num_videos", "num_frames", "num_errors")})
        logged["eval_frames_per_second"] = fps
        tracker.log_metrics(logged)

        out = cfg.out_dir
        write_parquet(frame_rows, storage.join(out, "per_frame.parquet"), frame_schema(keys), cfg.endpoint)
        write_parquet(videos, storage.join(out, "per_video.parquet"), None, cfg.endpoint)
        write_parquet(errors, storage.join(out, "errors.parquet"), pa.schema(
            [(k, pa.string()) for k in ("video_id", "clip_id", "person_id", "error")]), cfg.endpoint)
        networks = {e.name: e.network for e in (extractors.keypoints, extractors.embedding) if e is not None}
        table = metric_table_text(aggregate, labels, networks)
        report: dict[str, str] = {}
        if videos and not storage.is_remote(out):
            cases = _cases(cfg, videos)
            meta = {"checkpoint": str(cfg.checkpoint), "sha256": checkpoint_id["checkpoint.sha256"],
                    "data": cfg.data, "split": str(cfg.split), "MLflow run": tracker.run_id, **described}
            paths = write_report(out, aggregate, labels, cases, meta, cfg.report_frames)
            report = {k: str(v) for k, v in paths.items()}
            tracker.log_artifact(paths["dir"], "report")
            from PIL import Image

            tracker.log_image(np.asarray(Image.open(paths["png"]).convert("RGB")), "summary")
        if not storage.is_remote(out):
            for name in ("per_frame.parquet", "per_video.parquet", "errors.parquet"):
                tracker.log_artifact(Path(out) / name, "tables")
        tracker.set_tags({"eval.notes": " | ".join(notes)[:5000]} if notes else {})
        tracker.log_metrics({"s3_retries": retries.count})
        return EvalResult(run_id=tracker.run_id, aggregate=aggregate, metrics=logged, labels=labels, table=table,
                          out_dir=str(out), report=report, per_video=videos, errors=errors, notes=notes,
                          frames_per_second=fps, num_clips=len(clips), s3_retries=retries.count)


def _checkpoint_identity(cfg: runner.EvalConfig) -> dict[str, str]:
    """checkpoint.path / .sha256 / .size of the evaluated checkpoint ('random-init' when none)."""
    from services import storage

    if cfg.checkpoint is None:
        return {"checkpoint.path": "random-init", "checkpoint.sha256": "none"}
    with storage.local_copy(cfg.checkpoint, cfg.endpoint) as local:
        return {"checkpoint.path": str(cfg.checkpoint), "checkpoint.sha256": runner.file_sha256(local),
                "checkpoint.bytes": str(Path(local).stat().st_size)}


__all__ = ["EvalResult", "EvaluateClips", "Extractors", "evaluate", "init_ray", "run_rows", "select_clips"]
