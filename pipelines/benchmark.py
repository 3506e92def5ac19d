"""Scheduled benchmark: evaluate the newest checkpoint (or registered model) on a fixed set, compare with the
best earlier run of the MLflow experiment, exit 1 on a regression beyond the threshold.

python pipelines/benchmark.py --config configs/tiny-64.yaml --checkpoints ckpts/ --data bench_shards/ \
    --max-videos 8 [--threshold 0.05] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import sys

from evaluation.cli import add_eval_arguments, eval_config_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", help="checkpoint file, or folder (local or s3://) searched for the newest")
    source.add_argument("--model-name", help="MLflow registered model: its newest version is evaluated")
    add_eval_arguments(parser, checkpoint_required=False)
    parser.add_argument("--threshold", type=float, default=0.05, help="relative regression threshold (0.05)")
    parser.add_argument("--metrics", default="l1,akd,mkr,aed", help="metrics compared (lower is better)")
    args = parser.parse_args(argv)

    from evaluation.benchmark import BenchmarkConfig, run_benchmark
    from evaluation.ray_jobs import init_ray

    init_ray(args.ray_address, args.workers)

    cfg = BenchmarkConfig(eval=eval_config_from_args(args, experiment="fomm-benchmark"),
                          checkpoints=args.checkpoints, model_name=args.model_name,
                          metrics=tuple(m.strip() for m in args.metrics.split(",")), threshold=args.threshold)
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
