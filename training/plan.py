"""Before the workers start: check the job, scan the shards, build the Ray datasets, open the MLflow run."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fomm.config.schema import FommConfig
from preprocessing.shards import ShardSet
from services import storage
from training import data
from training.job import TrainJob, check_plan, run_path

RUN_FILE = "fomm_run.json"  # in storage/<name>: the MLflow run that a resumed job keeps logging to
RAY_CHECKPOINTS_FILE = "checkpoint_manager_snapshot.json"  # in storage/<name>: Ray Train's registered checkpoints


@dataclass
class TrainResult:
    """Where a finished job left its results."""

    checkpoint: str | None  # latest checkpoint file, original format (local path or s3:// URI)
    best_checkpoint: str | None  # lowest val_l1 among those kept
    mlflow_run_id: str
    metrics: dict[str, Any]
    resumed_from: str | None = None  # the checkpoint directory this job continued from


@dataclass
class RunPlan:
    """What the driver prepares before workers start: config, datasets, MLflow run."""

    job: TrainJob
    cfg: FommConfig
    datasets: dict[str, Any]
    samples_per_epoch: int
    mlflow_run_id: str
    tracking_uri: str
    resume_from: str | None = None  # the registered checkpoint directory Ray Train will restore, if any
    started_at: float = field(default_factory=time.time)  # the time budget (max_minutes) counts from here


def registered_checkpoints(job: TrainJob) -> list[str]:
    """Checkpoint directories of storage/<name> that Ray Train registered, oldest first; a resumed run restores
    the last. A directory on disk but not listed (its job stopped while reporting it) is never restored."""
    snapshot = storage.join(run_path(job), RAY_CHECKPOINTS_FILE)
    if not storage.exists(snapshot, job.endpoint):
        return []
    state = json.loads(storage.read_bytes(snapshot, job.endpoint))
    latest = (state.get("latest_checkpoint_result") or {}).get("checkpoint_dir_name")
    names = [r["checkpoint_dir_name"] for r in state.get("checkpoint_results", [])]
    return [n for n in names if n != latest] + ([latest] if latest else [])


def _open_mlflow_run(job: TrainJob, cfg: FommConfig) -> tuple[str, str]:
    """Create the job's MLflow run (or re-open it when resuming); returns (run id, tracking URI)."""
    from services.tracking.run import Tracker
    from services.tracking.store import default_tracking_uri

    uri = job.tracking_uri or default_tracking_uri()
    record = storage.join(run_path(job), RUN_FILE)
    if job.resume and storage.exists(record, job.endpoint):
        saved = json.loads(storage.read_bytes(record, job.endpoint))
        if saved.get("tracking_uri") == uri:
            Tracker(tracking_uri=uri, run_id=saved["mlflow_run_id"]).set_tags({"resumed": "true"})
            return saved["mlflow_run_id"], uri
    tracker = Tracker(tracking_uri=uri, experiment=job.experiment, run_name=job.run_name,
                      parent_run_id=job.parent_run_id, tags={"storage": run_path(job), "config": job.config})
    tracker.log_config({"fomm": cfg.to_dict(), "job": {k: v for k, v in dataclasses.asdict(job).items() if k != "overrides"},
                        "overrides": job.overrides})
    storage.write_bytes(record, json.dumps({"mlflow_run_id": tracker.run_id, "tracking_uri": uri}).encode(),
                        endpoint=job.endpoint)
    return tracker.run_id, uri


def plan_run(job: TrainJob) -> RunPlan:
    """Check the job, scan the shards, build the Ray datasets and open the MLflow run."""
    cfg = job.load_config()
    tp = cfg.train_params
    check_plan(job, cfg)
    shard_set = ShardSet.open(job.data, job.endpoint)  # listed once; its clips' metadata read once
    train_index = data.clip_index(shard_set, job.train_split)
    if len(train_index) == 0:
        raise data.DataError(f"{job.data}: no clips of split {job.train_split!r}")
    spec = data.PairSpec.from_config(cfg, train_index, job.train_split)
    datasets = {"train": data.train_dataset(shard_set, spec)}
    val_ids = data.choose_val_clips(data.clip_index(shard_set, job.val_split), job.num_val_clips,
                                    multiple_of=job.workers) if job.num_val_clips > 0 else []
    if val_ids:
        datasets["val"] = data.val_dataset(shard_set, job.val_split, val_ids, spec.frame_shape, job.val_frames)
    samples = data.samples_per_epoch(train_index, tp.num_repeats, cfg.dataset_params.id_sampling)
    if samples // job.workers < tp.batch_size // job.workers:  # 0 steps: refused before the MLflow run opens
        raise data.DataError(f"{job.data}: an epoch of {samples} samples is less than one batch per worker "
                             f"(batch_size {tp.batch_size}, {job.workers} workers); raise num_repeats")
    run_id, uri = _open_mlflow_run(job, cfg)
    resume_from = None
    if job.resume:
        registered = registered_checkpoints(job)
        resume_from = storage.join(run_path(job), registered[-1]) if registered else None
        if resume_from is None and storage.exists(run_path(job), job.endpoint):
            logging.getLogger(__name__).warning("%s: no checkpoint registered yet, the resumed run starts at step 0",
                                                run_path(job))
    return RunPlan(job, cfg, datasets, samples, run_id, uri, resume_from)
