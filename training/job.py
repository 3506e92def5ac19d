"""A training job: the FOMM YAML (possibly with overrides) plus where data, checkpoints and logs live."""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fomm.config import FommConfig, apply_overrides
from services.cli import at_least, field_flags


@dataclass(frozen=True, kw_only=True)
class TrainJob:
    """Everything `fit()` needs besides the model config; the defaults run on one laptop.

    `overrides` are applied to the YAML before it is typed (fomm.config.apply_overrides: dotted or nested keys,
    e.g. {"train_params.loss_weights.perceptual": [...]} from `--set` or a Ray Tune sample).
    """

    config: str  # path of an original-format FOMM YAML
    data: str  # shards: dataset root (with _manifest.json), folder of .parquet files, or one file; local or s3://
    storage: str  # checkpoints and run state; local or s3://
    name: str | None = None  # run folder under `storage`; default: the config file's stem
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    max_steps: int | None = None  # cap on optimiser steps (counted across resumes)
    max_minutes: float | None = None  # stop training this long after the job started (then validate, checkpoint)
    num_epochs: int | None = None  # overrides train_params.num_epochs
    # "epochs": the original ×0.1 decays at epoch_milestones; "budget": at the same fractions of max_steps /
    # max_minutes (milestone m at m / num_epochs of it, training runs until the budget ends: training/budget.py)
    lr_schedule: str = "epochs"
    tracking_uri: str | None = None  # MLflow; None: services.tracking.store.default_tracking_uri()
    experiment: str = "fomm-train"
    parent_run_id: str | None = None  # MLflow parent (a Tune sweep)
    resume: bool = False  # continue the run in storage/name if it exists
    keep_checkpoints: int = 3  # best N by val_l1 (the latest is always kept as well)
    max_failures: int = 3  # worker-group restarts from the latest checkpoint before giving up
    train_split: str = "train"
    val_split: str = "test"
    num_val_clips: int = 8  # held-out clips reconstructed after every epoch (rounded down to a multiple of workers)
    val_frames: int = 8  # frames per held-out clip, evenly spaced, the first one being the source
    log_images_every: int = 100  # steps between training-grid images in MLflow (0: never)
    shuffle_buffer: int | None = None  # samples in each worker's local shuffle buffer; None: 64 batches
    validate_at_start: bool = True  # log the untrained model's val_l1 (and the copy-source baseline) at step 0
    endpoint: str | None = None  # S3 endpoint for data and storage (else FOMM_S3_ENDPOINT / AWS_ENDPOINT_URL)
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be ≥ 1, got {self.workers}")
        if self.gpus_per_worker < 0 or self.cpus_per_worker <= 0:
            raise ValueError(f"need gpus_per_worker ≥ 0 and cpus_per_worker > 0, got "
                             f"{self.gpus_per_worker}, {self.cpus_per_worker}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be ≥ 1, got {self.max_steps}")
        if self.lr_schedule not in ("epochs", "budget"):
            raise ValueError(f"lr_schedule must be 'epochs' or 'budget', got {self.lr_schedule!r}")
        if self.lr_schedule == "budget" and self.max_steps is None and self.max_minutes is None:
            raise ValueError("lr_schedule 'budget' needs a budget: set max_steps and/or max_minutes")
        if self.val_frames < 2:
            raise ValueError(f"val_frames must be ≥ 2 (a source and a driving frame), got {self.val_frames}")
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", self.name):
            raise ValueError(f"run name {self.name!r}: use letters, digits, '.', '_' and '-' only")

    @property
    def run_name(self) -> str:
        return self.name or Path(self.config).stem

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    def replace(self, **changes: Any) -> TrainJob:
        return dataclasses.replace(self, **changes)

    def load_config(self) -> FommConfig:
        """The typed FOMM config: the YAML, then `overrides`, then `num_epochs`."""
        return resolve_config(self.config, self.overrides, self.num_epochs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_config(path: str | Path, overrides: dict | None = None, num_epochs: int | None = None) -> FommConfig:
    """Read a FOMM YAML, apply overrides (fomm.config.apply_overrides) and `num_epochs`, and type it again."""
    cfg = FommConfig.from_yaml(path)
    if not overrides and num_epochs is None:
        return cfg
    epochs = {} if num_epochs is None else {"train_params.num_epochs": int(num_epochs)}
    data = apply_overrides(cfg.to_dict(), {**(overrides or {}), **epochs})
    return FommConfig.from_dict(data, where=f"{Path(path).name} (with overrides):")


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """The flags pipelines/train.py and pipelines/tune.py share, each for a TrainJob field (its default)."""
    job = field_flags(parser, TrainJob)
    job("config", required=True, help="FOMM YAML (the original configs load unchanged)")
    job("data", required=True, help="clip shards: dataset root, folder of .parquet or one file (local or s3://)")
    job("storage", required=True, help="checkpoints and run state (local or s3://)")
    job("name", help="run folder under --storage (default: the config's stem)")
    job("workers", type=at_least(1), help="DDP workers")
    job("gpus_per_worker", type=float, help="0 trains on CPU with gloo; >0 on GPU with NCCL")
    job("max_steps", type=at_least(1), help="stop after this many optimiser steps (smoke tests)")
    job("num_epochs", "--epochs", type=at_least(1), help="override train_params.num_epochs")
    job("tracking_uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlruns)")
    job("experiment", help="MLflow experiment")
    job("num_val_clips", "--val-clips", type=at_least(0), help="held-out clips reconstructed after each epoch "
        "(0: no validation)")


def check_inputs(job: TrainJob) -> None:
    """Before Ray starts or anything is written: config (with --set), shards, storage and tracking URI."""
    from preprocessing.shards import require_shards
    from services import checks
    from services.cli import user_input

    checks.existing_file("--config", job.config, "a FOMM YAML")
    FommConfig.from_yaml(job.config)  # a ConfigError names the file and the key
    if job.overrides or job.num_epochs is not None:
        with user_input("--set"):
            job.load_config()
    require_shards("--data", job.data, job.train_split, job.endpoint)
    checks.writable_storage("--storage", job.storage, job.endpoint)
    checks.not_an_input("--storage", job.storage, {"--data": job.data, "--config": job.config})
    checks.tracking_uri("--tracking-uri", job.tracking_uri)
