"""A training job: the FOMM YAML (possibly with overrides) plus where data, checkpoints and logs live."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fomm.config.overrides import apply_overrides
from fomm.config.schema import FommConfig, load_config
from services.atomic import held_alone
from services.cli import experiment_flag, field_flags, user_path
from services.fields import check_fields, rule
from services.ray_address import add_ray_address_flag
from services.ray_start import MAX_NODE_CPUS

CHECKPOINT_FILE = "checkpoint.pth.tar"  # in each checkpoint folder, the original format (fomm.checkpoint)
RAY_CHECKPOINTS_FILE = "checkpoint_manager_snapshot.json"  # in storage/<name>: Ray Train's registered checkpoints
RUN_FILE = "fomm_run.json"  # in storage/<name>: the MLflow run that a resumed job keeps logging to
STATE_FILE = "train_state.json"  # in each checkpoint folder: what the original format has no room for (progress
# within an epoch, MLflow run)


@dataclass(frozen=True, kw_only=True)
class TrainJob:
    """Everything `fit()` needs besides the model config; the defaults run on one laptop. `overrides` (from `--set`
    or a Tune sample) are applied to the YAML before it is typed (fomm.config.apply_overrides)."""

    config: str = field(metadata=rule("FOMM YAML (the original configs load unchanged)"))
    data: str = field(metadata=rule("clip shards: dataset root, folder of .parquet or one file (local or s3://)"))
    storage: str = field(metadata=rule("checkpoints and run state (local or s3://)"))
    name: str | None = field(default=None, metadata=rule("run folder under --storage (default: the config's stem)"))
    workers: int = field(default=1, metadata=rule("DDP workers", ge=1))
    gpus_per_worker: float = field(default=0.0, metadata=rule("0 trains on CPU with gloo; >0 on GPU with NCCL", ge=0))
    cpus_per_worker: float = field(default=1.0, metadata=rule("CPUs per worker", gt=0, le=MAX_NODE_CPUS))
    placement: str = field(default="PACK", metadata=rule(  # Ray Train's ScalingConfig.placement_strategy
        "DDP workers on as few nodes as hold them (PACK: fast all-reduce) or one per node where the cluster can "
        "(SPREAD: a lost node takes fewer workers with it)", choices=("PACK", "SPREAD")))
    max_steps: int | None = field(default=None, metadata=rule(  # counted across resumes
        "stop after this many optimiser steps (smoke tests)", ge=1))
    max_minutes: float | None = field(default=None, metadata=rule(  # then validate, checkpoint
        "stop training this long after the start", ge=0.01))
    num_epochs: int | None = field(default=None, metadata=rule("override train_params.num_epochs", ge=1,
                                                                 flag="--epochs"))
    lr_schedule: str = field(default="epochs", metadata=rule(
        "decay the learning rates at the config's epoch_milestones (epochs), or at the same fractions of "
        "--max-steps / --max-minutes, training until that budget ends (budget)", choices=("epochs", "budget")))
    tracking_uri: str | None = field(default=None, metadata=rule(
        "MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///./mlruns/mlflow.db)"))
    experiment: str = field(default="fomm-train", metadata=rule("MLflow experiment"))
    parent_run_id: str | None = None  # MLflow parent (a Tune sweep)
    resume: bool = field(default=False, metadata=rule(
        "continue the run in --storage/--name from its latest checkpoint"))
    init_from: str | None = field(default=None, metadata=rule(  # a run restored from its own checkpoint ignores it
        "start a new run from this checkpoint's networks, e.g. vox-cpk.pth.tar to fine-tune (local, s3:// or "
        "models:/NAME/VERSION; not its optimisers or step)"))
    keep_checkpoints: int = field(default=3, metadata=rule("keep the best N checkpoints by val_l1 (and the latest)",
                                                           ge=1))
    max_failures: int = field(default=3, metadata=rule("worker-group restarts from the latest checkpoint", ge=0))
    train_split: str = "train"
    val_split: str = field(default="test", metadata=rule("the shards' split the held-out clips come from"))
    num_val_clips: int = field(default=8, metadata=rule(  # rounded down to a multiple of workers
        "held-out clips reconstructed after each epoch (0: no validation)", ge=0, flag="--val-clips"))
    val_frames: int = field(default=8, metadata=rule(  # evenly spaced, the first one being the source
        "frames per held-out clip (a source and at least one driving frame)", ge=2))
    log_images_every: int = field(default=100, metadata=rule(
        "steps between training grids in MLflow (0: never)", ge=0))
    shuffle_buffer: int | None = field(default=None, metadata=rule(  # None: 64 batches
        "samples in each worker's local shuffle buffer", ge=1))
    validate_at_start: bool = True  # log the untrained model's val_l1 (and the copy-source baseline) at step 0
    endpoint: str | None = field(default=None, metadata=rule(
        "S3 endpoint for data and storage (else FOMM_S3_ENDPOINT / AWS_ENDPOINT_URL)"))
    overrides: dict[str, Any] = field(default_factory=dict)
    ray_address: str | None = None  # the Ray cluster (--ray-address); None: $RAY_ADDRESS, else a local Ray

    def __post_init__(self) -> None:
        check_fields(self)  # the declared rules: finite numbers in range, choices
        if self.init_from is not None:  # read by workers, each in a folder of its own
            from services.storage import is_remote

            if not is_remote(self.init_from) and not self.init_from.startswith("models:"):
                object.__setattr__(self, "init_from", str(Path(user_path(self.init_from)).absolute()))
        if self.lr_schedule == "budget" and self.max_steps is None and self.max_minutes is None:
            raise ValueError("--lr-schedule budget needs a budget: set --max-steps and/or --max-minutes")
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*", self.name):
            raise ValueError(f"--name {self.name}: use letters, digits, '.', '_' and '-' only, not only dots (it "
                             "names a folder under --storage)")

    @property
    def run_name(self) -> str:
        return self.name or Path(self.config).stem

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    def load_config(self, base: FommConfig | None = None) -> FommConfig:
        """The typed FOMM config: the YAML (or `base`, already read from it), then `overrides`
        (fomm.config.apply_overrides), then `num_epochs`; a ConfigError where a training step could not run it
        (FommConfig.check_trainable)."""
        cfg = load_config(self.config) if base is None else base
        changed = bool(self.overrides) or self.num_epochs is not None
        where = f"{Path(self.config).name}{' (with overrides)' if changed else ''}:"
        if changed:
            epochs = {} if self.num_epochs is None else {"train_params.num_epochs": int(self.num_epochs)}
            cfg = FommConfig.from_dict(apply_overrides(cfg.to_dict(), {**self.overrides, **epochs}), where=where)
        cfg.check_trainable(where)
        return cfg


def run_path(job: TrainJob) -> str:
    """The run's folder: --storage/--name (local or s3://)."""
    from services import storage

    return storage.join(job.storage, job.run_name)


@contextlib.contextmanager
def run_lock(job: TrainJob) -> Iterator[None]:
    """One process at a time trains a run of a name in local storage: a second (the same command in another
    terminal, a Kubernetes Job retried while its first pod still trains) is refused before it writes into the same
    folder (an flock on --storage/.NAME.lock: services.atomic.held_alone). S3 has no lock."""
    from services import storage

    if storage.is_remote(job.storage):
        yield
        return
    with held_alone(Path(user_path(job.storage)) / f".{job.run_name}.lock",
                    f"--name {job.run_name}: a run of this name is training now",
                    "wait for it to end, or choose another --name"):
        yield


def registered_checkpoints(job: TrainJob) -> list[str]:
    """Checkpoint directories of storage/<name> that Ray Train registered, oldest first; a resumed run restores
    the last. A directory on disk but not listed (its job stopped while reporting it) is never restored."""
    def oldest_first(state: dict) -> list[str]:
        latest = (state.get("latest_checkpoint_result") or {}).get("checkpoint_dir_name")
        names = [r["checkpoint_dir_name"] for r in state.get("checkpoint_results", [])]
        return [n for n in names if n != latest] + ([latest] if latest else [])

    return run_record(job, RAY_CHECKPOINTS_FILE, read=oldest_first) or []


def resume_point(job: TrainJob) -> str | None:
    """The registered checkpoint directory a --resume run restores; None for a start at step 0, said where the run's
    folder is there already (stopped before its first checkpoint; a Tune trial restarted before one). Asked before
    the run opens its MLflow run, whose record would make a new run's folder look like an earlier one's."""
    from services import storage

    if not job.resume:
        return None
    if registered := registered_checkpoints(job):
        return storage.join(run_path(job), registered[-1])
    if storage.exists(run_path(job), job.endpoint):
        logging.getLogger(__name__).warning("%s: no checkpoint registered yet, the resumed run starts at step 0",
                                            run_path(job))
    return None


def run_record(job: TrainJob, *parts: str, read: Any = None) -> Any:
    """The JSON record at storage/<name>/`parts` that a resumed run goes on from, or `read` of it (None: there is
    none); a damaged or edited one is a CheckpointError naming it (a traceback, in the driver or in every worker)."""
    from fomm.checkpoint import CheckpointError
    from services import storage

    path = storage.join(run_path(job), *parts)
    if not storage.exists(path, job.endpoint):
        return None
    try:
        record = json.loads(storage.read_bytes(path, job.endpoint))
        if not isinstance(record, dict):
            raise TypeError(f"a JSON {type(record).__name__}, not an object")
        return read(record) if read else record
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise CheckpointError(f"{path}: damaged ({type(err).__name__}: {err}), a record this run resumes from: put it "
                              "back, or train a new run with another --name") from None


def read_init_checkpoint(job: TrainJob, tracking_uri: str | None = None, check: bool = False) -> dict[str, Any]:
    """The checkpoint dict --init-from names, read whole: by the input check (`check`: a missing, empty or
    unreachable file first said in one line naming the flag), then by each worker. A file (local or s3://), or a
    registered model version (models:/…) each machine copies from `tracking_uri` (the run's store; None: the job's)
    once for itself: a worker on another node has no copy of the driver's."""
    from fomm.checkpoint import read_checkpoint, require_checkpoint
    from services import checks, storage
    from services.tracking import store_checks

    path = store_checks.registered_checkpoint("--init-from", job.init_from, tracking_uri or job.tracking_uri)
    if check:
        checks.existing_file("--init-from", path, "a checkpoint file", job.endpoint)
        fs, fs_path = storage.resolve(path, job.endpoint)
        with fs.open(fs_path, "rb") as f:
            require_checkpoint(f, job.init_from)  # before the whole file is read
    return read_checkpoint(job.init_from, data=storage.read_bytes(path, job.endpoint))


def add_train_flags(parser: argparse.ArgumentParser, experiment: str = "fomm-train") -> None:
    """The flags pipelines/train.py and pipelines/tune.py share, each for a TrainJob field (its default; the stage's
    own `experiment`)."""
    job = field_flags(parser, TrainJob)  # name, help, type and range from TrainJob's declared rules
    for name in ("config", "data", "storage"):
        job(name, required=True)
    for name in ("name", "workers", "gpus_per_worker", "max_steps", "num_epochs", "tracking_uri"):
        job(name)
    experiment_flag(parser, experiment)
    for name in ("num_val_clips", "endpoint"):
        job(name)
    job("init_from", metavar="CHECKPOINT")
    add_ray_address_flag(parser)  # the job's ray_address
