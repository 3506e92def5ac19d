"""Sweep FOMM loss weights / learning rates with Ray Tune (ASHA on val_l1); prints the best config's path.

`python pipelines/tune.py --config YAML --space configs/sweeps/loss-weights.yaml --data SHARDS --storage DIR`
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services import checks, storage  # noqa: E402
from services.cli import UserError, field_flags, field_values  # noqa: E402
from services.stage import Stage, Summary  # noqa: E402
from services.tracking.store import default_tracking_uri, local_sqlite_path  # noqa: E402
from training.job import TrainJob, add_train_flags  # noqa: E402
from training.job_checks import check_inputs  # noqa: E402
from tuning.options import SweepJob  # noqa: E402
from tuning.spaces import SearchSpace  # noqa: E402


def add_flags(p: argparse.ArgumentParser) -> None:
    add_train_flags(p, "fomm-tune")  # of every trial; --name is the sweep's (default: sweep-<config stem>)
    p.set_defaults(num_val_clips=4)  # a sweep's: shorter validation
    p.add_argument("--space", default=str(ROOT / "configs" / "sweeps" / "loss-weights.yaml"),
                   help="search space YAML (default: the repository's configs/sweeps/loss-weights.yaml)")
    sweep = field_flags(p, SweepJob)  # help, types, ranges and defaults: SweepJob's rules
    for name in ("num_samples", "max_concurrent", "grace_period", "out"):
        sweep(name)
    sweep("resume", action="store_true")


def build(args: argparse.Namespace) -> tuple[TrainJob, argparse.Namespace]:
    return TrainJob(**field_values(TrainJob, args, resume=False, log_images_every=0)), args


def check(built: tuple[TrainJob, argparse.Namespace]) -> SweepJob:
    """The sweep's own files, then the base job's inputs; the SweepJob with the search space it read."""
    base, a = built
    if storage.is_remote(base.storage):  # s3a:// too: it was a local folder 's3a:', and exit 0
        raise UserError(f"--storage {base.storage}: a sweep keeps Ray Tune's state on a local or shared path")
    checks.existing_file("--space", a.space, "a search space YAML")
    store = local_sqlite_path(base.tracking_uri or default_tracking_uri())
    checks.not_an_input("--out", a.out, {"--config": a.config, "--space": a.space, "--data": a.data,
                                         "--init-from": base.init_from, "--tracking-uri": store})
    if a.out is not None:
        if Path(a.out).is_dir():
            raise UserError(f"--out {a.out}: is a folder (expected the best config's .yaml file)")
        if not a.resume:  # --resume: the interrupted sweep's own
            checks.new_file("--out", a.out)
        checks.writable_file("--out", a.out)
    space = SearchSpace.from_yaml(a.space)  # a SpaceError names the file and the key
    check_inputs(base, sweep=True)  # the sweep's own files first: they answer without torch
    space.check_against(base.load_config())
    return SweepJob(**field_values(SweepJob, a, base=base, space=space))  # the flags kept the rules


def run(job: SweepJob, args: argparse.Namespace) -> Summary:
    from tuning.sweep import run_sweep

    result = run_sweep(job)
    return Summary({"trials": result.num_trials,
                    f"best {job.space.metric}": result.best_metrics.get(job.space.metric),
                    "best sample": result.best_sample, "best config": result.best_config,
                    "mlflow parent run id": result.parent_run_id})


def keeps(job: SweepJob) -> dict[str, str]:
    """A failed sweep keeps Ray Tune's state in <storage>/<name>: --resume restores it."""
    return {str(Path(job.base.storage) / job.name): "rerun the same command with --resume to restore the sweep",
            job.base.storage: ""}


STAGE = Stage("tune", __doc__, add_flags, build, check, run, keeps)
main, parse_args = STAGE.main, STAGE.parse_args


if __name__ == "__main__":
    sys.exit(main())
