"""Evaluate a FOMM checkpoint by video reconstruction (paper Sec. 4, Table 3): L1, AKD, MKR, AED → MLflow.

python pipelines/evaluate.py --config configs/vox-256.yaml --checkpoint vox-cpk.pth.tar --data shards/

Exit 1 when more clips failed than --max-error-fraction allows or a --require metric has no value (NaN).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root importable

from evaluation.cli import check_eval_inputs, eval_config_from_args, eval_flags, metric_names  # noqa: E402
from evaluation.runner import EvalConfig  # noqa: E402
from services.stage import Stage, Summary  # noqa: E402


def add_flags(p: argparse.ArgumentParser) -> None:
    eval_flags(p, experiment="fomm-eval")
    p.add_argument("--require", default="l1",
                   help="metrics that must have a value, comma-separated (default l1; others may be NaN)")


def build(args: argparse.Namespace) -> EvalConfig:
    metric_names("--require", args.require)
    return eval_config_from_args(args)


def run(cfg: EvalConfig, args: argparse.Namespace) -> Summary:
    from evaluation.benchmark import judge
    from evaluation.ray_jobs import evaluate, init_ray

    init_ray(args.ray_address, cfg.num_workers, cfg.cpus_per_worker, cfg.device)
    result = evaluate(cfg)
    print(result.table)
    problems, _ = judge(result, metric_names("--require", args.require), args.max_error_fraction)
    if problems:  # the run's page says it failed and why, as the exit status does (it said FINISHED)
        from services.tracking.run import Tracker

        Tracker(cfg.tracking_uri, run_id=result.run_id).end("FAILED", reason="; ".join(problems))
    return Summary({"videos": f"{int(result.aggregate['num_videos'])}, frames: {int(result.aggregate['num_frames'])}, "
                              f"errors: {len(result.errors)}, {result.frames_per_second:.1f} frames/s, "
                              f"S3 retries: {result.s3_retries}",
                    "per-video table": f"{result.out_dir}/per_video.parquet",
                    **({"report": result.report["html"]} if result.report else {}),
                    "MLflow run id": result.run_id},
                   notes=[f"note: {note}" for note in result.notes],
                   status=1 if problems else 0, problem="FAILED: " + "; ".join(problems))


STAGE = Stage("evaluate", __doc__, add_flags, build, check_eval_inputs, run)
main, parse_args = STAGE.main, STAGE.parse_args


if __name__ == "__main__":
    sys.exit(main())
