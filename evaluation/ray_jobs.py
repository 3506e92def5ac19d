"""The evaluation job: Ray Data map_batches over test clips → per-frame rows → Parquet, report and MLflow run."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from PIL import Image

from evaluation import runner
from evaluation.reconstruction import ModelSource
from evaluation.report import metric_table_text, write_report
from preprocessing.shard_set import ShardSet
from services import checks, s3_retries, storage
from services.atomic import atomic_dir
from services.errors import UserError
from services.ray_address import cluster_address
from services.ray_start import (
    actor_device,
    check_device_room,
    check_room,
    connected,
    ensure_ray,
    gpus_for,
    local_cpus,
)
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
    errors: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    frames_per_second: float = 0.0
    num_clips: int = 0  # clips selected; each failed one has a row in `errors`
    s3_retries: int = 0  # S3 requests this process retried (all of them in-process; the driver's with Ray workers)


def frame_schema(keys: list[str]) -> pa.Schema:
    return pa.schema([*[(k, pa.string()) for k in runner.IDENT], ("frame", pa.int64()),
                      *[(k, pa.float64()) for k in keys], ("error", pa.string())])


class EvaluateClips:
    """Ray Data actor: loads the model (from the driver's bytes) and extractors once, then scores clip rows."""

    def __init__(self, cfg: runner.EvalConfig, source: ModelSource | list) -> None:
        import torch

        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
        self.cfg = cfg = dataclasses.replace(cfg, device=actor_device(cfg.device))
        if isinstance(source, list):  # [ObjectRef]: one copy in the object store, not one pickle per actor
            source = ray.get(source[0])
        self.model = source.load(cfg.device)
        self.extractors, _ = runner.build_extractors(cfg)
        self.schema = frame_schema(list(self.extractors.labels()))

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = [frame for row in batch.to_pylist() for frame in runner.evaluate_clip(
            row, self.model, self.extractors, self.cfg.batch_size, self.cfg.device)]
        return pa.Table.from_pylist(out, schema=self.schema)


# the task reading the shards runs beside the actors: an actor holding every CPU left it none, and the evaluation
# waited forever (--cpus-per-worker 2 on a 2-CPU machine)
READ_CPUS = 1


def init_ray(address: str | None, workers: int, cpus_per_worker: float = 1.0, device: str = "cpu") -> None:
    """Join a Ray cluster (argument, $RAY_ADDRESS) or start a local one, where an actor's CPUs (and GPU) and the
    read task's CPU fit; none for 0 workers. A local Ray's actors run here: its device is this machine's."""
    if workers == 0:
        return
    need = cpus_per_worker + READ_CPUS
    if not (cluster_address(address) or connected()):
        checks.device("--device", device)  # before the local Ray starts, as without workers
    ensure_ray(address, num_cpus=local_cpus(need), log_to_driver=False)
    check_room("--cpus-per-worker", "CPU", cpus_per_worker)
    check_device_room(device)
    if (have := ray.cluster_resources().get("CPU", 0.0)) < need:
        raise UserError(f"--cpus-per-worker {cpus_per_worker:g}: an evaluation actor and the task reading its clips "
                        f"need {need:g} CPUs, and the Ray cluster has {have:g}; the job would wait forever")


def select_clips(cfg: runner.EvalConfig, shard_set: ShardSet) -> list[str]:
    """The ids of the clips to evaluate (shard order): the split, then the first `max_videos`."""
    clip_ids = list(shard_set.index(cfg.split, cfg.max_videos).clip_ids)
    if not clip_ids:
        raise ValueError(f"{cfg.data}: no clips" + (f" in split {cfg.split!r}" if cfg.split else ""))
    return clip_ids


def run_rows(cfg: runner.EvalConfig, source: ModelSource, shard_set: ShardSet, clip_ids: list[str]) -> list[dict]:
    """Per-frame rows of all selected clips: on Ray Data actors, or in-process when num_workers == 0."""
    if cfg.num_workers == 0:
        rows = pa.Table.from_pylist(shard_set.rows(clip_ids, READ_COLUMNS))
        return EvaluateClips(cfg, source)(rows).to_pylist()
    init_ray(None, cfg.num_workers, cfg.cpus_per_worker, cfg.device)  # as the stage asked
    from ray.data.expressions import col

    ds = shard_set.dataset(cfg.split, READ_COLUMNS, paths=shard_set.holding(clip_ids))
    # one clip per block, so that the actor pool spreads the videos (shards hold many clips per row group)
    ds = ds.filter(expr=col("clip_id").is_in(sorted(set(clip_ids)))).repartition(len(clip_ids))
    ds = ds.map_batches(EvaluateClips, batch_size=1, batch_format="pyarrow",
                        fn_constructor_kwargs={"cfg": cfg, "source": [ray.put(source)]},
                        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cfg.num_workers),
                        num_cpus=cfg.cpus_per_worker, num_gpus=gpus_for(cfg.device))
    return ds.take_all()


def _cases(cfg: runner.EvalConfig, source: ModelSource, shard_set: ShardSet, videos: list[dict]) -> list[dict]:
    """Worst and best clips by L1, reconstructed again on the driver for the report."""
    from evaluation.reconstruction import reconstruct_video
    from preprocessing.shards import decode_frames

    try:  # the driver need not have the workers' device: then its CPU reconstructs the few report clips
        device = checks.device("--device", cfg.device)
    except UserError:
        device = "cpu"
    model = source.load(device)
    ranked = sorted((v for v in videos if np.isfinite(v["l1"])), key=lambda v: v["l1"])
    n = min(cfg.report_cases, len(ranked) // 2 or len(ranked))
    picks = [("worst", v) for v in ranked[::-1][:n]] + [("best", v) for v in ranked[:n]]
    rows = {r["clip_id"]: r for r in shard_set.rows([v["clip_id"] for _, v in picks], READ_COLUMNS)}
    cases = []
    for title, video in picks:
        result = reconstruct_video(model, decode_frames(rows[video["clip_id"]]["frames"]), cfg.batch_size, device)
        cases.append({"title": title, "clip_id": video["clip_id"], "l1": video["l1"], **result})  # real, prediction
    return cases


def evaluate(cfg: runner.EvalConfig) -> EvalResult:
    """Run the whole evaluation, logged to one MLflow run (FAILED if anything raises); inputs are read once, here."""
    shard_set = ShardSet.open(cfg.data, cfg.endpoint)
    source = ModelSource.resolve(cfg.config_path, cfg.checkpoint, cfg.endpoint)
    extractors, notes = runner.build_extractors(cfg)
    labels = extractors.labels()
    keys = list(labels)
    described = extractors.describe()
    tags = {"fomm.kind": "evaluation", "fomm.domain": cfg.domain, **cfg.tags}
    with (Tracker(cfg.tracking_uri, cfg.experiment, cfg.run_name, tags=tags) as tracker,
          s3_retries.counting_retries() as retries):
        checkpoint_id = source.identity()
        tracker.log_config({"eval": dataclasses.asdict(cfg), "fomm": source.config.to_dict()})
        tracker.log_params({**described, **checkpoint_id})
        tracker.set_tags({"checkpoint.sha256": checkpoint_id["checkpoint.sha256"]})
        clips = select_clips(cfg, shard_set)
        start = time.perf_counter()
        rows = run_rows(cfg, source, shard_set, clips)
        elapsed = time.perf_counter() - start
        frame_rows = sorted((r for r in rows if r["error"] is None), key=lambda r: (r["clip_id"], r["frame"]))
        errors = [{k: r[k] for k in (*runner.IDENT, "error")} for r in rows if r["error"] is not None]
        videos = runner.per_video(frame_rows, keys)
        aggregate = runner.aggregate_frames(frame_rows, keys)
        aggregate["num_errors"] = float(len(errors))
        fps = len(frame_rows) / elapsed if elapsed > 0 else 0.0
        logged = {**{labels[k] + end: aggregate[k + end] for k in keys for end in ("", "_frames")},
                  **{k: aggregate[k] for k in ("num_videos", "num_frames", "num_errors")},
                  "eval_frames_per_second": fps}
        tracker.log_metrics(logged)

        out, local = cfg.out_dir, not storage.is_remote(cfg.out_dir)
        tables = {"per_frame": (frame_rows, frame_schema(keys)), "per_video": (videos, None),
                  "errors": (errors, pa.schema([(k, pa.string()) for k in (*runner.IDENT, "error")]))}
        # a local --out is built beside it and appears whole or not at all (an earlier report/ replaced, not
        # merged: its cases' GIFs would stay); on S3 each object is one PUT
        with atomic_dir(out, whole=("report",)) if local else contextlib.nullcontext(out) as work:
            for name, (table_rows, schema) in tables.items():  # each written whole (local or s3://)
                sink = io.BytesIO()
                pq.write_table(pa.Table.from_pylist(table_rows, schema=schema), sink)
                storage.write_bytes(storage.join(work, f"{name}.parquet"), sink.getvalue(), endpoint=cfg.endpoint)
            networks = {e.name: e.network for e in (extractors.keypoints, extractors.embedding) if e is not None}
            table = metric_table_text(aggregate, labels, networks)
            report: dict[str, str] = {}
            if videos and local:
                cases = _cases(cfg, source, shard_set, videos)
                meta = {"checkpoint": str(cfg.checkpoint), "sha256": checkpoint_id["checkpoint.sha256"],
                        "data": cfg.data, "split": str(cfg.split), "MLflow run": tracker.run_id, **described}
                paths = write_report(work, aggregate, labels, cases, meta, cfg.report_frames)
                report = {k: str(Path(out) / Path(v).relative_to(work)) for k, v in paths.items()}
                tracker.log_artifact(paths["dir"], "report")
                tracker.log_image(np.asarray(Image.open(paths["png"]).convert("RGB")), "summary")
            for name in tables if local else ():  # an s3:// --out is not copied into the run
                tracker.log_artifact(Path(work) / f"{name}.parquet", "tables")
        tracker.set_tags({"eval.notes": " | ".join(notes)[:5000]} if notes else {})
        tracker.log_metrics({"s3_retries": retries.count})
        return EvalResult(run_id=tracker.run_id, aggregate=aggregate, metrics=logged, labels=labels, table=table,
                          out_dir=str(out), report=report, errors=errors, notes=notes, frames_per_second=fps,
                          num_clips=len(clips), s3_retries=retries.count)
