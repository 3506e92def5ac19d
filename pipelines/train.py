"""Train FOMM on Ray Train: `python pipelines/train.py --config YAML --data SHARDS --storage DIR [...]`.

Runs on a laptop (a local Ray) or a cluster (RAY_ADDRESS, `ray job submit`) unchanged; `--model-name NAME`
registers the best checkpoint as a new version of that MLflow model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root importable

from fomm.config.overrides import parse_assignments  # noqa: E402
from services import storage  # noqa: E402
from services.cli import UserError, field_flags, field_values  # noqa: E402
from services.stage import Stage, Summary  # noqa: E402
from training.job import TrainJob, add_train_flags  # noqa: E402
from training.job_checks import check_inputs  # noqa: E402


def add_flags(p: argparse.ArgumentParser) -> None:
    add_train_flags(p)
    job = field_flags(p, TrainJob)  # help, types and ranges: TrainJob's rules
    for name in ("cpus_per_worker", "placement", "max_minutes", "lr_schedule", "keep_checkpoints", "max_failures", "val_split",
                 "log_images_every"):
        job(name)
    job("resume", action="store_true")
    p.add_argument("--model-name", default=None,
                   help="register the best checkpoint as a new version of this MLflow model (default: not registered)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, written as in the YAML, e.g. "
                        "train_params.loss_weights.perceptual=[10,10,10,0,0]")


def build(args: argparse.Namespace) -> TrainJob:
    if args.model_name is not None:  # MLflow refused it only once the training had ended
        from services.tracking.registry import MODEL_NAME

        if not MODEL_NAME.fullmatch(args.model_name):
            raise UserError(f"--model-name {args.model_name}: not a name MLflow registers a model under (no '/', "
                            "':' or '@'; not blank)")
    return TrainJob(**field_values(TrainJob, args, overrides=parse_assignments(args.set)))


def run(job: TrainJob, args: argparse.Namespace) -> Summary:
    from training.registry import register_best
    from training.trainer import fit

    result = fit(job)
    version = register_best(job, result, args.model_name) if args.model_name else None
    resumed = {"resumed from": result.resumed_from or "step 0 (no registered checkpoint)"} if job.resume else {}
    registered = {"registered model": f"{version['name']} version {version['version']}"} if version else {}
    scored = {"val_l1": result.metrics["val_l1"]} if "val_l1" in result.metrics else {}  # none: not validated
    return Summary({**resumed, "checkpoint": result.checkpoint, "best checkpoint": result.best_checkpoint,
                    **scored, "mlflow run id": result.mlflow_run_id, **registered})


def keeps(job: TrainJob) -> dict[str, str]:
    """A failed run keeps its checkpoints in <storage>/<name>: --resume goes on from the last one."""
    if storage.is_remote(job.storage):
        return {}
    return {str(Path(job.storage) / job.run_name): "rerun the same command with --resume to go on from its last "
                                                    "checkpoint", job.storage: ""}


STAGE = Stage("train", __doc__, add_flags, build, check_inputs, run, keeps)
main, parse_args = STAGE.main, STAGE.parse_args


if __name__ == "__main__":
    sys.exit(main())
