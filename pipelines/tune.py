"""Sweep FOMM loss weights / learning rates with Ray Tune (ASHA on val_l1); prints the best config's path.

`python pipelines/tune.py --config YAML --space configs/sweeps/loss-weights.yaml --data SHARDS --storage DIR`
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services import checks  # noqa: E402
from services.cli import ArgumentParser, UserError, at_least, field_values, report, run_cli, user_input  # noqa: E402
from training.job import TrainJob, add_train_flags, check_inputs  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_train_flags(p)  # of every trial; --name is the sweep's (default: sweep-<config stem>)
    p.set_defaults(experiment="fomm-tune", num_val_clips=4)  # a sweep's: its own experiment, shorter validation
    p.add_argument("--space", default="configs/sweeps/loss-weights.yaml", help="search space YAML")
    # SweepJob's fields (tuning.sweep imports Ray Tune, so its defaults are checked by a test, not imported here)
    p.add_argument("--num-samples", type=at_least(1), default=None, help="trials (default: the space file's)")
    p.add_argument("--max-concurrent", type=at_least(1), default=1, help="trials at once")
    p.add_argument("--grace-period", type=at_least(1), default=1, help="reports before ASHA may stop a trial")
    p.add_argument("--out", default=None, help="best config YAML (default: <storage>/<name>/best.yaml)")
    p.add_argument("--resume", action="store_true", help="restore an interrupted sweep (Tuner.restore)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv, "tune")


def _main(argv: list[str]) -> int:
    a = parse_args(argv)
    with user_input():
        base = TrainJob(**field_values(TrainJob, a, resume=False, log_images_every=0))
    check_inputs(base)
    if base.storage.startswith("s3://"):
        raise UserError(f"--storage {base.storage}: a sweep keeps Ray Tune's state on a local or shared path")
    checks.existing_file("--space", a.space, "a search space YAML")
    checks.not_an_input("--out", a.out, {"--config": a.config, "--space": a.space, "--data": a.data})
    from tuning.spaces import SearchSpace  # imports Ray Tune (seconds): after the cheap checks

    space = SearchSpace.from_yaml(a.space)  # a SpaceError names the file and the key
    space.check_against(base.load_config())
    from tuning.sweep import SweepJob, run_sweep

    with user_input():
        sweep = SweepJob(**field_values(SweepJob, a, base=base, space=space))
    result = run_sweep(sweep)
    return report({"trials": result.num_trials,
                   f"best {sweep.space.metric}": result.best_metrics.get(sweep.space.metric),
                   "best sample": result.best_sample, "best config": result.best_config,
                   "mlflow parent run id": result.parent_run_id})


if __name__ == "__main__":
    sys.exit(main())
