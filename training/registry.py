"""A finished training run's best checkpoint as a new version of an MLflow registered model."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from services import storage
from services.atomic import scratch_dir
from services.tracking.registry import register_run_files
from services.tracking.store import default_tracking_uri, is_transient
from training.job import CHECKPOINT_FILE, STATE_FILE, TrainJob
from training.trainer import TrainResult


def register_best(job: TrainJob, result: TrainResult, model_name: str) -> dict | None:
    """The best checkpoint (by val_l1; else the latest) as a new version of `model_name`: its folder's
    original-format checkpoint and config.yaml become run artifacts `model/`; its step, epoch and val_l1, the
    run's final metrics (`final.*`) and its path become version tags. None without a run or checkpoint, or with
    the store unreachable (a warning: a run never fails for its tracker)."""
    if not (checkpoint := result.best_checkpoint or result.checkpoint):
        return None
    folder = checkpoint.rsplit("/", 1)[0]
    state = json.loads(storage.read_bytes(storage.join(folder, STATE_FILE), job.endpoint))
    tags = {"checkpoint_path": checkpoint, **{k: str(state[k]) for k in ("step", "epoch", "val_l1")
                                           if state.get(k) is not None},
            **{f"final.{k}": str(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}}
    try:
        with scratch_dir("model") as tmp:
            for name in (CHECKPOINT_FILE, "config.yaml"):
                with storage.local_copy(storage.join(folder, name), job.endpoint) as local:
                    (shutil.move if storage.is_remote(folder) else shutil.copyfile)(local, Path(tmp) / name)
            return register_run_files(job.tracking_uri or default_tracking_uri(), model_name, result.mlflow_run_id,
                                      tmp, tags)
    except Exception as exc:
        if not is_transient(exc):
            raise
        logging.getLogger(__name__).warning("%s: not registered as model %s, the tracking store is unreachable "
                                            "(%s)", checkpoint, model_name, exc)
        return None
