"""Sweep FOMM loss weights / learning rates with Ray Tune (ASHA on val_l1); prints the best config's path.

`python pipelines/tune.py --config YAML --space configs/sweeps/loss-weights.yaml --data SHARDS --storage DIR`
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services import checks  # noqa: E402
from services.cli import UserError, at_least, field_values, user_input  # noqa: E402
from services.stage import Stage, Summary  # noqa: E402
from training.job import TrainJob, add_train_flags, check_inputs  # noqa: E402


def add_flags(p: argparse.ArgumentParser) -> None:
    add_train_flags(p)  # of every trial; --name is the sweep's (default: sweep-<config stem>)
    p.set_defaults(experiment="fomm-tune", num_val_clips=4)  # a sweep's: its own experiment, shorter validation
    p.add_argument("--space", default="configs/sweeps/loss-weights.yaml", help="search space YAML")
    # SweepJob's fields (tuning.sweep imports Ray Tune, so its defaults are checked by a test, not imported here)
    p.add_argument("--num-samples", type=at_least(1), default=None, help="trials (default: the space file's)")
    p.add_argument("--max-concurrent", type=at_least(1), default=1, help="trials at once")
    p.add_argument("--grace-period", type=at_least(1), default=1, help="reports before ASHA may stop a trial")
    p.add_argument("--out", default=None, help="best config YAML (default: <storage>/<name>/best.yaml)")
    p.add_argument("--resume", action="store_true", help="restore an interrupted sweep (Tuner.restore)")


class Sweep(NamedTuple):
    """The sweep's base job and its flags; `check` adds the search space it read."""

    base: TrainJob
    args: argparse.Namespace
    space: Any = None  # tuning.spaces.SearchSpace (imports Ray Tune) once checked


def build(args: argparse.Namespace) -> Sweep:
    return Sweep(TrainJob(**field_values(TrainJob, args, resume=False, log_images_every=0)), args)


def check(sweep: Sweep) -> Sweep:
    base, a = sweep.base, sweep.args
    check_inputs(base, sweep=True)
    if base.storage.startswith("s3://"):
        raise UserError(f"--storage {base.storage}: a sweep keeps Ray Tune's state on a local or shared path")
    checks.existing_file("--space", a.space, "a search space YAML")
    checks.not_an_input("--out", a.out, {"--config": a.config, "--space": a.space, "--data": a.data})
    from tuning.spaces import SearchSpace  # imports Ray Tune (seconds): after the cheap checks

    space = SearchSpace.from_yaml(a.space)  # a SpaceError names the file and the key
    space.check_against(base.load_config())
    return sweep._replace(space=space)


def run(sweep: Sweep, a: argparse.Namespace) -> Summary:
    from tuning.sweep import SweepJob, run_sweep

    with user_input():
        job = SweepJob(**field_values(SweepJob, a, base=sweep.base, space=sweep.space))
    result = run_sweep(job)
    return Summary({"trials": result.num_trials,
                    f"best {job.space.metric}": result.best_metrics.get(job.space.metric),
                    "best sample": result.best_sample, "best config": result.best_config,
                    "mlflow parent run id": result.parent_run_id})


STAGE = Stage("tune", __doc__, add_flags, build, check, run)
main, parse_args = STAGE.main, STAGE.parse_args


if __name__ == "__main__":
    sys.exit(main())
