"""The driver side of FOMM on Ray Train (the workers' loop is `training.worker`): `make_trainer` wires Ray Train's
configs; `fit` runs a whole job and ends its MLflow run with the true status."""

from __future__ import annotations

import logging
import os
import time

import ray
import ray.train
import ray.train.torch

from services import ray_start, storage
from training.job import TrainJob, run_path
from training.plan import RunPlan, TrainResult, plan_run
from training.worker import CHECKPOINT_FILE, NO_SCORE, train_loop_per_worker

# CPUs a run's Ray Data pipeline needs beside its workers: its read and decode stages run as separate tasks, and
# a read task holds its CPU until the decode stage consumes its output (with one CPU, each waits on the other)
DATA_CPUS = 2


def cpus_per_run(job: TrainJob) -> float:
    """The CPUs one run of `job` needs at once: its workers' and its data pipeline's."""
    return job.workers * job.cpus_per_worker + DATA_CPUS


def make_trainer(plan: RunPlan, callbacks: list | None = None) -> ray.train.torch.TorchTrainer:
    """A TorchTrainer for the plan: DDP over `workers` (NCCL on GPU, gloo on CPU), checkpoints in storage."""
    job = plan.job
    resources = {"CPU": job.cpus_per_worker, **({"GPU": job.gpus_per_worker} if job.use_gpu else {})}
    fs, fs_path = storage.resolve(job.storage, job.endpoint)
    run_config = ray.train.RunConfig(
        name=job.run_name, storage_path=fs_path, storage_filesystem=storage.arrow_filesystem(fs),
        failure_config=ray.train.FailureConfig(max_failures=job.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=job.keep_checkpoints,
                                                     checkpoint_score_attribute="val_l1", checkpoint_score_order="min"),
        callbacks=callbacks or [])
    # each worker receives the frozen job and config objects as parsed here (pickled, not re-parsed)
    loop_config = {"job": job, "fomm": plan.cfg, "samples_per_epoch": plan.samples_per_epoch,
                   "has_val": "val" in plan.datasets, "mlflow_run_id": plan.mlflow_run_id,
                   "tracking_uri": plan.tracking_uri, "started_at": plan.started_at}
    return ray.train.torch.TorchTrainer(
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


def fit_plan(plan: RunPlan, callbacks: list | None = None) -> ray.train.Result:
    """Run the plan's trainer and end its MLflow run with the true status whatever ends the fit (an error,
    Ctrl-C: KILLED), tagged with the latest checkpoint; raises the run's error."""
    from services.tracking.run import Tracker, end_status

    result, status = None, "FINISHED"
    try:
        result = make_trainer(plan, callbacks).fit()
        if result.error is not None:
            raise result.error
    except BaseException as exc:  # Ray Train V2 raises TrainingFailedError; Ctrl-C arrives as KeyboardInterrupt
        status = end_status(exc)
        raise
    finally:
        tracker = Tracker(tracking_uri=plan.tracking_uri, run_id=plan.mlflow_run_id)
        if latest := _checkpoint_file(result.checkpoint if result is not None else None, plan.job):
            tracker.set_tags({"checkpoint_path": latest})
        tracker.end(status)
    return result


def fit(job: TrainJob) -> TrainResult:
    """Run a training job to the end (or max_steps); resumes from storage/<name> when `job.resume`."""
    started_at = time.time()
    ensure_training_ray(job)
    # before any run exists: the workers' GPUs and CPUs fit the cluster (a UserError naming the flag, no hang)
    ray_start.check_room("--gpus-per-worker", "GPU", job.gpus_per_worker, job.workers)
    ray_start.check_room("--cpus-per-worker", "CPU", job.cpus_per_worker, job.workers)
    if (cpus := ray.cluster_resources().get("CPU", 0)) < cpus_per_run(job):  # Ray Data's tasks could never run
        logging.getLogger(__name__).warning(
            "the cluster has %s CPUs and %d workers × %s CPUs leave fewer than %d for Ray Data's read and decode "
            "tasks: training will wait for data unless the cluster grows (start Ray with more --num-cpus)", cpus,
            job.workers, job.cpus_per_worker, DATA_CPUS)
    plan = plan_run(job)
    plan.started_at = started_at
    result = fit_plan(plan)
    best = min(result.best_checkpoints or [], key=lambda cm: cm[1].get("val_l1", NO_SCORE), default=None)
    return TrainResult(_checkpoint_file(result.checkpoint, job), _checkpoint_file(best[0] if best else None, job),
                       plan.mlflow_run_id, dict(result.metrics or {}), plan.resume_from)


def ensure_training_ray(job: TrainJob) -> None:
    """Connect to the job's cluster (--ray-address, $RAY_ADDRESS), or start a local Ray with room for the workers
    and the data tasks."""
    # DATA_CPUS beyond the workers' even on a 2-core laptop, or decoding waits forever behind their reservations
    cpus = max(os.cpu_count() or 1, int(cpus_per_run(job)))
    ray_start.ensure_ray(job.ray_address, num_cpus=cpus)
