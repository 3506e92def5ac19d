"""Scheduled benchmark: evaluate the newest checkpoint (or registered model) on a fixed set, compare with the
best earlier run of the MLflow experiment, exit 1 on a regression beyond the threshold.

python pipelines/benchmark.py --config configs/tiny-64.yaml --checkpoints ckpts/ --data bench_shards/ \
    --max-videos 8 [--threshold 0.05] [--tracking-uri URI] [--max-error-fraction 0]

Also a regression (exit 1): a metric without a value (NaN: no frame scored), more failed clips than
--max-error-fraction allows.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.cli import check_eval_inputs, eval_config_from_args, eval_parser, metric_names  # noqa: E402
from services.cli import UserError, at_least, run_cli, user_input  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = eval_parser(__doc__.splitlines()[0], experiment="fomm-benchmark", checkpoint_required=False)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", help="checkpoint file, or folder (local or s3://) searched for the newest")
    source.add_argument("--model-name", help="MLflow registered model: its newest version is evaluated")
    parser.add_argument("--threshold", type=at_least(0.0, float), default=0.05,  # as BenchmarkConfig (a test checks)
                        help="relative regression threshold")
    parser.add_argument("--metrics", default="l1,akd,mkr,aed", help="metrics compared (lower is better)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv, "benchmark")


def _main(argv: list[str]) -> int:
    args = parse_args(argv)

    from evaluation.benchmark import BenchmarkConfig, newest_checkpoint, run_benchmark
    from evaluation.ray_jobs import init_ray
    from services.tracking.registry import latest_model_version

    metrics = metric_names("--metrics", args.metrics)
    eval_cfg = eval_config_from_args(args)
    if args.checkpoints is not None:  # the checkpoint that will be evaluated must fit the config
        with user_input("--checkpoints"):
            newest = newest_checkpoint(args.checkpoints, args.endpoint)
        check_eval_inputs(dataclasses.replace(eval_cfg, checkpoint=newest), "--checkpoints")
    else:
        check_eval_inputs(eval_cfg)
        try:
            latest_model_version(eval_cfg.tracking_uri, args.model_name)
        except LookupError as err:
            raise UserError(f"--model-name {args.model_name}: {err}") from None
    init_ray(args.ray_address, eval_cfg.num_workers, eval_cfg.cpus_per_worker)

    with user_input():
        cfg = BenchmarkConfig(eval=eval_cfg, checkpoints=args.checkpoints, model_name=args.model_name,
                              metrics=metrics, threshold=args.threshold,
                              max_error_fraction=args.max_error_fraction)
    bench = run_benchmark(cfg)
    print(bench.result.table)
    print(f"checkpoint: {bench.checkpoint}")
    if bench.baseline is None:
        print("baseline: none (first comparable run)")
    else:
        print(f"baseline: run {bench.baseline['run_id']} ({bench.baseline.get('run_name')})")
        for key, (now, best) in bench.compared.items():
            print(f"  {key}: {now:.5f} (best {best:.5f})")
    print(f"MLflow run id: {bench.result.run_id}")
    if bench.regressions:
        print("REGRESSION: " + "; ".join(bench.regressions), file=sys.stderr)
    else:
        print("no regression")
    return bench.exit_code


if __name__ == "__main__":
    sys.exit(main())
