"""Ray Data batch job: animate every (source, driving, output) row of a CSV, local or s3://, skipping done pairs;
or, as the original's animate mode, pairs of a dataset's clips (--data) into --out.

python pipelines/animate_batch.py --pairs pairs.csv --config configs/vox-256.yaml --checkpoint vox-cpk.pth.tar
python pipelines/animate_batch.py --data DATASET --out animation/ --config configs/vox-256.yaml --checkpoint …

CSV paths are relative to its folder; a pair that fails goes to the error table and the job goes on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root importable

from animate import batch, batch_checks  # noqa: E402
from animate.options import add_animation_flags, add_model_flags, check_animation_flags, weights  # noqa: E402
from services.cli import UserError, at_least  # noqa: E402
from services.ray_address import add_ray_address_flag  # noqa: E402
from services.ray_start import MAX_NODE_CPUS  # noqa: E402
from services.stage import Stage, Summary  # noqa: E402


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pairs", help="CSV with source,driving,output columns (local or s3://)")
    p.add_argument("--data", help="or a dataset's clips, paired as the original's animate mode does (its test split)")
    p.add_argument("--out", help="with --data: the folder of the animations, DRIVING-SOURCE + animate_params.format")
    p.add_argument("--split", default="test", help="with --data: the split whose clips are paired (default test)")
    p.add_argument("--num-pairs", type=at_least(1), help="with --data: pairs drawn at random from the first N clips' "
                   "grid (default: the config's animate_params.num_pairs)")
    p.add_argument("--pairs-list", help="with --data: a CSV of source,driving video names or clip ids (default: the "
                   "config's dataset_params.pairs_list where that file is)")
    add_model_flags(p)
    p.add_argument("--errors", help="error table CSV (default: next to --pairs, *.errors.csv; --out/errors.csv)")
    add_animation_flags(p, motion_default="on; with --data the config's animate_params.normalization_params, as "
                        "the original's animate mode")
    p.add_argument("--concurrency", type=at_least(1), default=1,
                   help="animator actors at most (as many as the Ray cluster has room for)")
    p.add_argument("--num-cpus", type=at_least(0.01, float, at_most=MAX_NODE_CPUS), default=1, help="CPUs per actor")
    add_ray_address_flag(p)
    p.add_argument("--endpoint", help="S3 endpoint of s3:// paths (else FOMM_S3_ENDPOINT / AWS_ENDPOINT_URL)")


def build(args: argparse.Namespace) -> dict:
    """animate.batch.start's keyword arguments (the flags, checked by their rules)."""
    given, config_given = args.checkpoint, args.config is not None
    if (args.pairs is None) == (args.data is None):
        raise UserError("give --pairs CSV (rows of files) or --data DATASET (pairs of its clips), one of them")
    if args.pairs is not None and (flag := next((f"--{f.replace('_', '-')}" for f in ("out", "num_pairs", "pairs_list")
                                                  if getattr(args, f) is not None), None)):
        raise UserError(f"{flag}: with --data only (--pairs names each row's output)")
    if args.data is not None and args.out is None:
        raise UserError("--data needs --out, the folder of the animations")
    if args.data is not None and args.crop == "auto":
        raise UserError("--crop auto: not with --data (a dataset's clips were cropped as preprocess made them)")
    args.crop = args.crop or ("center" if args.data is not None else None)
    if args.pairs is not None:  # files, as `fomm animate` takes them; --data: the config's (fomm.animator)
        args.relative, args.adapt_movement_scale = (True if v is None else v for v in (args.relative,
                                                                                      args.adapt_movement_scale))
    weights(args)
    check_animation_flags(args)
    job = {k: v for k, v in vars(args).items() if k != "debug"}
    if args.checkpoint != given:  # a models:/ version: each actor's machine copies it for itself
        job["registered"] = batch.registered(given, registered_config=not config_given)
    return job


def check(job: dict) -> dict:
    """The job with its rows (the CSV's, read once; or --data's pairs), planned once: the job animates what was
    checked."""
    plan = {k: job.pop(k) for k in ("data", "split", "out", "num_pairs", "pairs_list")}
    if plan["data"] is None:
        return {**job, "rows": batch_checks.check_inputs(job["pairs"], job["config"], job["checkpoint"],
                                                         job["random_init"], job["errors"], job["endpoint"])}
    rows, errors, clips = batch_checks.check_dataset(plan["data"], plan["split"], plan["out"], plan["num_pairs"],
                                                     plan["pairs_list"], job["config"], job["checkpoint"],
                                                     job["random_init"], job["errors"], job["endpoint"])
    return {**job, "rows": rows, "errors": errors, "clips": clips}


def run(job: dict, args: argparse.Namespace) -> Summary:
    summary = batch.start(**job)
    return Summary(notes=[json.dumps(summary), f"error table: {summary['errors']}"], status=int(summary["failed"] > 0),
                   problem=f"animate_batch: {summary['failed']} of {summary['pairs']} pairs failed "
                           f"(see {summary['errors']})")


STAGE = Stage("animate_batch", __doc__, add_flags, build, check, run)
main, parse_args = STAGE.main, STAGE.parse_args


if __name__ == "__main__":
    sys.exit(main())
