"""Evaluate a FOMM checkpoint by video reconstruction (paper Sec. 4, Table 3): L1, AKD, MKR, AED → MLflow.

python pipelines/evaluate.py --config configs/vox-256.yaml --checkpoint vox-cpk.pth.tar --data shards/ \
    [--tracking-uri URI] [--max-videos N] [--out DIR] [--max-error-fraction 0]

Exit 1 when more clips failed than --max-error-fraction allows or a --require metric has no value (NaN: no
frame could be scored), with the errors summarised on one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.cli import check_eval_inputs, eval_config_from_args, eval_parser, metric_names  # noqa: E402
from services.cli import run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv, "evaluate")


def _main(argv: list[str]) -> int:
    parser = eval_parser(__doc__.splitlines()[0], experiment="fomm-eval")
    parser.add_argument("--require", default="l1",
                        help="metrics that must have a value, comma-separated (default l1; others may be NaN)")
    args = parser.parse_args(argv)
    required = metric_names("--require", args.require)
    cfg = eval_config_from_args(args)
    check_eval_inputs(cfg)

    from evaluation.benchmark import judge
    from evaluation.ray_jobs import evaluate, init_ray

    init_ray(args.ray_address, cfg.num_workers, cfg.cpus_per_worker)

    result = evaluate(cfg)
    print(result.table)
    for note in result.notes:
        print(f"note: {note}")
    print(f"videos: {int(result.aggregate['num_videos'])}, frames: {int(result.aggregate['num_frames'])}, "
          f"errors: {len(result.errors)}, {result.frames_per_second:.1f} frames/s, S3 retries: {result.s3_retries}")
    print(f"per-video table: {result.out_dir}/per_video.parquet")
    if result.report:
        print(f"report: {result.report['html']}")
    print(f"MLflow run id: {result.run_id}")
    problems, _ = judge(result, required, args.max_error_fraction)
    if problems:
        print("FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
