"""The driver side of FOMM on Ray Train (the workers' loop is `training.worker`): `plan_run` prepares a run before
the workers start, `make_trainer` wires Ray Train's configs, `fit` runs a whole job (`fit_plan`: a prepared one)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import ray
import ray.train
import ray.train.torch
from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerGroupCallback
from ray.train.v2._internal.execution.controller.state import ReschedulingState

from fomm.config.schema import FommConfig
from preprocessing.shard_set import ShardSet
from services import ray_start, storage
from services.errors import UserError, is_user_error
from services.failures import every_task_fails
from training import data
from training.job import CHECKPOINT_FILE, RUN_FILE, TrainJob, resume_point, run_lock, run_path, run_record
from training.job_checks import check_plan, room_wait_s
from training.worker import DIVERGED_FILE, NO_SCORE, train_loop_per_worker

HEALTH_CHECK_S = 0.5  # how often Ray Train's controller looks at the workers (make_trainer)


class TrainingDiverged(UserError):
    """A loss became NaN or inf: the run stopped there and kept no checkpoint of the weights that step made."""


@dataclass
class TrainResult:
    """Where a finished job left its results."""

    checkpoint: str | None  # latest checkpoint file, original format (local path or s3:// URI)
    best_checkpoint: str | None  # lowest val_l1 among those kept
    mlflow_run_id: str
    run_path: str  # storage/<name>
    metrics: dict[str, Any]  # the last report's (val_l1 only where held-out clips were validated)
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


def _open_mlflow_run(job: TrainJob, cfg: FommConfig) -> tuple[str, str]:
    """Create the job's MLflow run (or re-open it when resuming); returns (run id, tracking URI)."""
    from services.tracking.run import Tracker
    from services.tracking.store import default_tracking_uri

    uri = job.tracking_uri or default_tracking_uri()
    record = storage.join(run_path(job), RUN_FILE)
    job_fields = {k: v for k, v in dataclasses.asdict(job).items() if k not in ("overrides", "resume")}
    run_config = {"fomm": cfg.to_dict(), "job": job_fields, "overrides": job.overrides}
    if job.resume and (saved := run_record(job, RUN_FILE)) and saved.get("tracking_uri") == uri:
        tracker = Tracker(tracking_uri=uri, run_id=saved["mlflow_run_id"], take_over=True, tags={"resumed": "true"})
        tracker.log_config(run_config)  # settings changed since the start: tags fomm.changed_param.KEY
        return saved["mlflow_run_id"], uri
    tracker = Tracker(tracking_uri=uri, experiment=job.experiment, run_name=job.run_name,
                      parent_run_id=job.parent_run_id, tags={"storage": run_path(job), "config": job.config})
    with tracker.ended_if_raises():  # an artifact store or --storage failing here: the run ends FAILED
        tracker.log_config(run_config)
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
    if len(train_index) == 0:  # the manifest may list shards of the split that hold none (a file replaced)
        listed = job.train_split in shard_set.splits
        raise data.DataError(f"{job.data}: no clips of split {job.train_split!r}" + (
            " in the shards its manifest lists for it (replaced or damaged? compare them with the sha256 in "
            "_manifest.json)" if listed else ""))
    spec = data.PairSpec.from_config(cfg, train_index, job.train_split)
    datasets = {"train": data.train_dataset(shard_set, spec)}
    if val_ids := data.choose_val_clips(data.clip_index(shard_set, job.val_split), job.num_val_clips,
                                        multiple_of=job.workers):
        datasets["val"] = data.val_dataset(shard_set, job.val_split, val_ids, spec.frame_shape, job.val_frames)
    samples = data.samples_per_epoch(train_index, tp.num_repeats, cfg.dataset_params.id_sampling)
    if samples // job.workers < tp.batch_size // job.workers:  # 0 steps: refused before the MLflow run opens
        raise data.DataError(f"{job.data}: an epoch of {samples} samples is less than one batch per worker "
                             f"(batch_size {tp.batch_size}, {job.workers} workers); raise num_repeats")
    resume_from = resume_point(job)
    run_id, uri = _open_mlflow_run(job, cfg)
    return RunPlan(job, cfg, datasets, samples, run_id, uri, resume_from)


# CPUs a run's Ray Data pipeline needs beside its workers: its read and decode stages run as separate tasks, and
# a read task holds its CPU until the decode stage consumes its output (with one CPU, each waits on the other)
DATA_CPUS = 2


def cpus_per_run(job: TrainJob) -> float:
    """The CPUs one run of `job` needs at once: its workers' and its data pipeline's."""
    return job.workers * job.cpus_per_worker + DATA_CPUS


class StopWhereRestartsFail(ray.train.UserCallback):
    """A worker error that every restart would meet again ends the run at once, not after --max-failures restarts
    from a checkpoint: a bad input (a user error: a corrupt checkpoint to resume from, undecodable frames) or a full
    or read-only disk, no S3 credentials or endpoint (services.failures.every_task_fails)."""

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        lasting = (err for err in worker_exceptions.values() if is_user_error(err) or every_task_fails(err))
        if (err := next(lasting, None)) is not None:
            raise ray.train.ControllerError(err)  # Ray Train retries a worker group's error, not its controller's


class ControllerConsoleWithoutTracebacks(ControllerCallback):
    """Ray Train's controller logs its own failure (a full disk under its checkpoint index) with a traceback: once
    its logging is set up, its console drops them (services.ray_start); the driver's one line says what failed.
    A callback of Ray Train's internal kind, which `RunConfig.callbacks` takes for such workarounds."""

    def after_controller_start(self, train_run_context: Any) -> None:
        ray_start.console_without_tracebacks("ray.train")


class StopWhereTheClusterCannotFeedTheRun(WorkerGroupCallback, ControllerCallback):
    """A node lost and not replaced. Where the workers still fit, Ray Train restarts them there, and the data
    pipeline's tasks, left without a CPU, wait forever (the run hung); where they no longer fit (a GPU node lost),
    it retries starting them forever. Once either has lasted `wait_s` (an autoscaler's replacement comes sooner),
    the run ends in one line; its checkpoints stay."""

    def __init__(self, job: TrainJob, wait_s: float) -> None:
        self.job, self.wait_s, self.short_since, self.unstarted_since = job, wait_s, None, None

    def after_worker_group_poll_status(self, worker_group_status: Any) -> None:
        self.unstarted_since = None
        need, have = cpus_per_run(self.job), ray.cluster_resources().get("CPU", 0.0)
        self.short_since = None if have >= need else self.short_since or time.monotonic()
        if self.short_since and time.monotonic() - self.short_since >= self.wait_s:
            self._end(f"the Ray cluster has had {have:g} CPUs for {self.wait_s:g} s (a node lost?); the run needs "
                      f"{need:g} ({self.job.workers} worker(s) × {self.job.cpus_per_worker:g} and {DATA_CPUS} for "
                      "its data) and would wait forever")

    def after_controller_state_update(self, previous_state: Any, current_state: Any) -> None:
        if not isinstance(current_state, ReschedulingState):  # it follows each worker group that could not start
            return
        self.unstarted_since = self.unstarted_since or time.monotonic()
        if time.monotonic() - self.unstarted_since >= self.wait_s:
            job, have = self.job, ray.cluster_resources()
            gpus = f", {job.gpus_per_worker:g} GPU" if job.use_gpu else ""
            self._end(f"Ray Train could not start the run's {job.workers} worker(s) ({job.cpus_per_worker:g} CPU"
                      f"{gpus} each) for {self.wait_s:g} s (a node lost?); the Ray cluster has "
                      f"{have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs, and it would retry forever")

    @staticmethod
    def _end(why: str) -> None:
        raise ray.train.ControllerError(UserError(f"{why} ($FOMM_ROOM_WAIT_S sets how long it waits for room)"))


class FommTrainer(ray.train.torch.TorchTrainer):
    """Ray Train's TorchTrainer without its driver's SIGINT handler, which turns Ctrl-C into SystemExit(1): exit 1,
    no line, the MLflow run FAILED. Ctrl-C stays the KeyboardInterrupt every stage ends on (exit 130, the run
    KILLED); `fit_plan` then ends its Train controller at once (`end_controller`)."""

    controller: Any = None  # the run's Train controller (an actor handle), kept where Ray would register its handler

    def _register_sigint_handler(self, controller: Any) -> None:
        self.controller = controller


def end_controller(controller: Any) -> None:
    """End an interrupted run's Train controller before its driver leaves. Left to die with the driver, it could
    first make a new worker group's placement group (it saw its workers go as the driver removed the first), which
    nothing removed: on a cluster the group held its CPUs until a restart, and the next run waited forever."""
    if controller is not None:
        with contextlib.suppress(Exception):  # already gone: nothing to end
            ray.kill(controller, no_restart=True)
            ray.get(controller.__ray_ready__.remote(), timeout=5)  # returns once it is dead (RayActorError)


def make_trainer(plan: RunPlan, callbacks: list | None = None) -> ray.train.torch.TorchTrainer:
    """A TorchTrainer for the plan: DDP over `workers` (NCCL on GPU, gloo on CPU), checkpoints in storage."""
    job = plan.job
    # Ray Train's controller reads its workers' reports and ends every HEALTH_CHECK_S (Ray's default 2 s): each
    # checkpoint report and the run's end waited up to that. An operator's own setting stays; Ray passes it on
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(HEALTH_CHECK_S))
    resources = {"CPU": job.cpus_per_worker, **({"GPU": job.gpus_per_worker} if job.use_gpu else {})}
    fs, fs_path = storage.resolve(job.storage, job.endpoint)
    run_config = ray.train.RunConfig(
        name=job.run_name, storage_path=fs_path, storage_filesystem=storage.arrow_filesystem(fs),
        failure_config=ray.train.FailureConfig(max_failures=job.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=job.keep_checkpoints,
                                                     checkpoint_score_attribute="val_l1", checkpoint_score_order="min"),
        callbacks=[StopWhereRestartsFail(), ControllerConsoleWithoutTracebacks(),
                   StopWhereTheClusterCannotFeedTheRun(job, room_wait_s()), *(callbacks or [])],
        logging_config=ray.train.LoggingConfig(log_level="WARNING"))  # its INFO lines: in the Ray session's logs
    # each worker receives the frozen job and config objects as parsed here (pickled, not re-parsed)
    loop_config = {"job": job, "fomm": plan.cfg, "samples_per_epoch": plan.samples_per_epoch,
                   "has_val": "val" in plan.datasets, "mlflow_run_id": plan.mlflow_run_id,
                   "tracking_uri": plan.tracking_uri, "started_at": plan.started_at}
    return FommTrainer(
        train_loop_per_worker, train_loop_config=loop_config,
        torch_config=ray.train.torch.TorchConfig(backend="nccl" if job.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=job.workers, use_gpu=job.use_gpu,
                                               resources_per_worker=resources, placement_strategy=job.placement),
        run_config=run_config, datasets=plan.datasets, dataset_config=ray.train.DataConfig(datasets_to_split="all"))


def _checkpoint_file(checkpoint: ray.train.Checkpoint | None, job: TrainJob) -> str | None:
    if checkpoint is None:
        return None
    # Ray Train's path is inside the storage filesystem (no scheme); the run folder's URL keeps --storage's
    return storage.join(run_path(job), checkpoint.path.rstrip("/").rsplit("/", 1)[-1], CHECKPOINT_FILE)


def _diverged_at(plan: RunPlan) -> int | None:
    """The step whose loss turned NaN or inf in this submission of the plan (its workers' record), if one did."""
    path = storage.join(run_path(plan.job), DIVERGED_FILE)
    if not storage.exists(path, plan.job.endpoint):
        return None
    record = json.loads(storage.read_bytes(path, plan.job.endpoint))
    return record["step"] if record.get("started_at") == plan.started_at else None  # not an earlier submission's


def fit_plan(plan: RunPlan, callbacks: list | None = None) -> ray.train.Result:
    """Run the plan's trainer and end its MLflow run with the true status whatever ends the fit (an error,
    Ctrl-C: KILLED), tagged with the latest checkpoint; raises the run's error."""
    from services.tracking.run import Tracker, end_reason, end_status

    result, status, reason, trainer = None, "FINISHED", None, None
    try:
        trainer = make_trainer(plan, callbacks)
        result = trainer.fit()
        if result.error is not None:
            raise result.error
        if (step := _diverged_at(plan)) is not None:
            last = _checkpoint_file(result.checkpoint, plan.job)
            raise TrainingDiverged(
                f"{run_path(plan.job)}: training diverged at step {step} (a loss became NaN or inf) and stopped; "
                f"lower the learning rates (--set train_params.lr_generator=…) and --resume from the last "
                f"checkpoint before it ({last or 'none was taken'})")
    except BaseException as exc:  # Ray Train V2 raises TrainingFailedError; Ctrl-C arrives as KeyboardInterrupt
        status, reason = end_status(exc), end_reason(exc)
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, SIGTERM (`ray job stop`), SIGHUP
            end_controller(getattr(trainer, "controller", None))
        raise
    finally:
        tracker = Tracker(tracking_uri=plan.tracking_uri, run_id=plan.mlflow_run_id)
        latest = _checkpoint_file(result.checkpoint if result is not None else None, plan.job)
        if latest:
            tracker.set_tags({"checkpoint_path": latest})
        tracker.end(status, reason=reason)  # its page says how it ended
    return result


def fit(job: TrainJob) -> TrainResult:
    """Run a training job to the end (or max_steps); resumes from storage/<name> when `job.resume`."""
    started_at = time.time()  # the time budget (max_minutes) counts from here
    with run_lock(job):
        ensure_training_ray(job)
        # before any run exists: the workers' GPUs and CPUs fit the cluster (a UserError naming the flag, no hang)
        ray_start.check_room("--gpus-per-worker", "GPU", job.gpus_per_worker, job.workers)
        ray_start.check_room("--cpus-per-worker", "CPU", job.cpus_per_worker, job.workers)
        if (cpus := ray.cluster_resources().get("CPU", 0)) < cpus_per_run(job):  # Ray Data's tasks could never run
            logging.getLogger(__name__).warning(
                "the cluster has %s CPUs and %d workers × %s CPUs leave fewer than %d for Ray Data's read and "
                "decode tasks: training will wait for data unless the cluster grows within %g s (start Ray with "
                "more --num-cpus)", cpus, job.workers, job.cpus_per_worker, DATA_CPUS, room_wait_s())
        plan = plan_run(job)
        plan.started_at = started_at
        result = fit_plan(plan)
    best = min(result.best_checkpoints or [], key=lambda cm: cm[1].get("val_l1", NO_SCORE), default=None)
    scored = {k: v for k, v in (result.metrics or {}).items() if not (k == "val_l1" and v == NO_SCORE)}  # no val
    return TrainResult(_checkpoint_file(result.checkpoint, job), _checkpoint_file(best[0] if best else None, job),
                       plan.mlflow_run_id, run_path(job), scored, plan.resume_from)


def ensure_training_ray(job: TrainJob) -> None:
    """Connect to the job's cluster (--ray-address, $RAY_ADDRESS), or start a local Ray with room for the workers
    and the data tasks, and with its dashboard: Ray Train's placement-group cleaner asks it whether a run's
    controller lives. Without it, the workers' group of a Tune trial ended under its controller was never removed,
    and the sweep's next trial waited forever for a CPU for its data."""
    # DATA_CPUS beyond the workers' even on a 2-core laptop, or decoding waits forever behind their reservations
    ray_start.ensure_ray(job.ray_address, num_cpus=ray_start.local_cpus(cpus_per_run(job)), dashboard=True)
