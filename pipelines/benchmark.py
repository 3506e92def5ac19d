"""Scheduled benchmark: evaluate the newest checkpoint (or registered model) on a fixed set, compare with the
best earlier run of the MLflow experiment, exit 1 on a regression beyond the threshold, a metric without a value
(NaN) or more failed clips than --max-error-fraction allows.

python pipelines/benchmark.py --config configs/tiny-64.yaml --checkpoints ckpts/ --data bench_shards/
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root importable

from evaluation.benchmark import BenchmarkConfig, newest_checkpoint, run_benchmark, unmeasured  # noqa: E402
from evaluation.cli import check_eval_inputs, eval_config_from_args, eval_flags, metric_names  # noqa: E402
from services import checks  # noqa: E402
from services.cli import UserError, field_default, field_flags, field_values, user_input  # noqa: E402
from services.stage import Stage, Summary  # noqa: E402


def add_flags(p: argparse.ArgumentParser) -> None:
    eval_flags(p, experiment="fomm-benchmark", checkpoint_required=False)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", help="checkpoint file, or folder (local or s3://) searched for the newest")
    source.add_argument("--model-name", help="MLflow registered model: its newest version is evaluated")
    bench = field_flags(p, BenchmarkConfig)  # type, range, default and help: BenchmarkConfig's rules
    bench("threshold")
    bench("promote", metavar="ALIAS")
    p.add_argument("--metrics", help="metrics compared (lower is better; default l1,akd,mkr,aed: those measured)")


def build(args: argparse.Namespace) -> BenchmarkConfig:
    metrics = metric_names("--metrics", args.metrics) if args.metrics else field_default(BenchmarkConfig, "metrics")
    cfg = BenchmarkConfig(**field_values(BenchmarkConfig, args, eval=eval_config_from_args(args), metrics=metrics))
    if args.metrics is not None and (why := unmeasured(cfg)):  # named, it passed the gate unmeasured: exit 0
        raise UserError(f"--metrics {args.metrics}: {why} (leave it out, or turn its extractor on)")
    return cfg


def check(cfg: BenchmarkConfig) -> None:
    """The checkpoint that will be evaluated (the newest of --checkpoints, or the model's) fits the config."""
    if cfg.checkpoints is not None:
        checks.storage_reachable("--checkpoints", cfg.checkpoints, cfg.eval.endpoint)
        with user_input("--checkpoints"):
            newest = newest_checkpoint(cfg.checkpoints, cfg.eval.endpoint)
        check_eval_inputs(dataclasses.replace(cfg.eval, checkpoint=newest), "--checkpoints")
        return
    check_eval_inputs(cfg.eval)
    from services.tracking.registry import (  # MLflow (seconds): only for --model-name
        ALIAS,
        latest_model_version,
    )

    if cfg.promote is not None and not ALIAS.fullmatch(cfg.promote):  # refused only after the evaluation, else
        raise UserError(f"--promote {cfg.promote}: not an alias MLflow takes (letters, digits, '_' and '-'; not "
                        "'latest' or v<N>, its own names)")

    try:
        latest_model_version(cfg.eval.tracking_uri, cfg.model_name)
    except LookupError as err:
        raise UserError(f"--model-name {cfg.model_name}: {err}") from None


def run(cfg: BenchmarkConfig, args: argparse.Namespace) -> Summary:
    from evaluation.ray_jobs import init_ray

    init_ray(args.ray_address, cfg.eval.num_workers, cfg.eval.cpus_per_worker, cfg.eval.device)
    bench = run_benchmark(cfg)
    print(bench.result.table)
    baseline = "none (first comparable run)" if bench.baseline is None else \
        f"run {bench.baseline['run_id']} ({bench.baseline.get('run_name')})"
    compared = [f"  {key}: {now:.5f} (best {best:.5f})" for key, (now, best) in bench.compared.items()]
    promoted = {"promoted": bench.promoted} if bench.promoted else {}
    return Summary({"checkpoint": bench.checkpoint, "baseline": baseline, **promoted},
                   notes=[*compared, f"MLflow run id: {bench.result.run_id}",
                          *([] if bench.regressions else ["no regression"])],
                   status=1 if bench.regressions else 0, problem="REGRESSION: " + "; ".join(bench.regressions))


STAGE = Stage("benchmark", __doc__, add_flags, build, check, run)
main, parse_args = STAGE.main, STAGE.parse_args


if __name__ == "__main__":
    sys.exit(main())
