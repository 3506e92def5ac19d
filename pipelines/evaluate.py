"""Evaluate a FOMM checkpoint by video reconstruction (paper Sec. 4, Table 3): L1, AKD, MKR, AED → MLflow.

python pipelines/evaluate.py --config configs/vox-256.yaml --checkpoint vox-cpk.pth.tar --data shards/ \
    [--tracking-uri URI] [--max-videos N] [--out DIR] [--max-error-fraction 0]

Exit 1 when more clips failed than --max-error-fraction allows or a metric has no value (errors summarised).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.cli import add_eval_arguments, check_eval_inputs, eval_config_from_args  # noqa: E402
from services.cli import ArgumentParser, run_cli  # noqa: E402

GATED_METRICS = ("l1", "akd", "mkr", "aed")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv, "evaluate")


def _main(argv: list[str]) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    add_eval_arguments(parser)
    args = parser.parse_args(argv)
    cfg = eval_config_from_args(args, experiment="fomm-eval")
    check_eval_inputs(cfg)

    from evaluation.benchmark import judge
    from evaluation.ray_jobs import evaluate, init_ray

    init_ray(args.ray_address, cfg.num_workers)

    result = evaluate(cfg)
    print(result.table)
    for note in result.notes:
        print(f"note: {note}")
    print(f"videos: {int(result.aggregate['num_videos'])}, frames: {int(result.aggregate['num_frames'])}, "
          f"errors: {len(result.errors)}, {result.frames_per_second:.1f} frames/s")
    print(f"per-video table: {result.out_dir}/per_video.parquet")
    if result.report:
        print(f"report: {result.report['html']}")
    print(f"MLflow run id: {result.run_id}")
    problems, _ = judge(result, GATED_METRICS, args.max_error_fraction)
    if problems:
        print("FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
