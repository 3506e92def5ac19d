"""A finished training run's best checkpoint as a new version of an MLflow registered model."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from preprocessing import storage
from services.tracking import default_tracking_uri, is_transient, register_run_files
from training.job import TrainJob
from training.plan import TrainResult

CONFIG_FILE = "config.yaml"  # the typed config, beside the original-format checkpoint in each checkpoint folder


def register_best(job: TrainJob, result: TrainResult, model_name: str) -> dict | None:
    """Register the best checkpoint (by val_l1; else the latest) of a finished run as a version of `model_name`.

    The checkpoint's folder (the original-format checkpoint and config.yaml) becomes the run's artifacts `model/`
    and the version's files; the version's tags say the checkpoint's step, epoch and val_l1, the run's final
    metrics (`final.*`) and where the checkpoint lives. Returns {name, version, source, run_id}, or None when
    there is no run or checkpoint, or the store is unreachable (a warning: a run never fails for its tracker).
    """
    from training.trainer import CHECKPOINT_FILE, STATE_FILE

    checkpoint = result.best_checkpoint or result.checkpoint
    if not (result.mlflow_run_id and checkpoint):
        return None
    folder = checkpoint.rsplit("/", 1)[0]
    state = json.loads(storage.read_bytes(storage.join(folder, STATE_FILE), job.endpoint))
    tags = {"checkpoint_path": checkpoint, "config": job.config,
            **{k: str(state[k]) for k in ("step", "epoch", "val_l1") if state.get(k) is not None},
            **{f"final.{k}": str(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}}
    try:
        with tempfile.TemporaryDirectory(prefix="fomm-model-") as tmp:
            for name in (CHECKPOINT_FILE, CONFIG_FILE):
                with storage.local_copy(storage.join(folder, name), job.endpoint) as local:
                    copy = shutil.move if storage.is_remote(folder) else shutil.copyfile  # a download: take it
                    copy(local, Path(tmp) / name)
            return register_run_files(job.tracking_uri or default_tracking_uri(), model_name, result.mlflow_run_id,
                                      tmp, tags)
    except Exception as exc:
        if not is_transient(exc):
            raise
        logging.getLogger(__name__).warning("%s: not registered as a version of model %s, the tracking store is "
                                            "unreachable (%s)", checkpoint, model_name, exc)
        return None
