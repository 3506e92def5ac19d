"""Ray Data batch job: animate every (source, driving, output) row of a CSV, local or s3://, skipping done pairs.

python pipelines/animate.py --pairs pairs.csv --config configs/vox-256.yaml --checkpoint vox-cpk.pth.tar \
    [--crop auto|center|pad|none] [--subject N] [--no-paste-back] [--smooth S] \
    [--errors errors.csv] [--concurrency 2] [--num-cpus 1] [--ray-address auto]

The CSV has a header with at least `source,driving,output`; relative paths are relative to the CSV's folder.
A pair whose output exists is skipped; a pair that fails goes to the error table (CSV) and the job goes on.
The job itself is animate.batch.animate_pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.cli import ArgumentParser, at_least, run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv, "animate")


def _main(argv: list[str]) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", required=True, help="CSV with source,driving,output columns (local or s3://)")
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint")
    parser.add_argument("--random-init", action="store_true", help="untrained model (tests and demos only)")
    parser.add_argument("--errors", help="error table CSV (default: next to --pairs, *.errors.csv)")
    parser.add_argument("--absolute", dest="relative", action="store_false", help="absolute motion transfer")
    parser.add_argument("--no-adapt-scale", dest="adapt_movement_scale", action="store_false")
    parser.add_argument("--layout", choices=("result", "side-by-side"), default="result")
    parser.add_argument("--batch-size", type=at_least(1), default=8)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: bf16 where the device computes it natively, else fp32")
    parser.add_argument("--crop", choices=("auto", "center", "pad", "none"),
                        help="auto (default for face/body configs where a detector runs): crop on the subject")
    parser.add_argument("--subject", type=at_least(0), help="with --crop auto: subject N from the left (default largest)")
    parser.add_argument("--paste-back", action=argparse.BooleanOptionalAction, default=True,
                        help="with --crop auto: result blended into the full source frame (default on)")
    parser.add_argument("--smooth", type=at_least(0.0, float), default=3.0,
                        help="one-euro smoothing, frames at rest (0 off)")
    parser.add_argument("--concurrency", type=at_least(1), default=1, help="animator actors")
    parser.add_argument("--num-cpus", type=at_least(0.01, float), default=1, help="CPUs per actor")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS or a local one)")
    args = parser.parse_args(argv)
    if args.checkpoint is None and not args.random_init:
        parser.error("--checkpoint is required (or --random-init)")
    from animate.batch import animate_pairs

    summary = animate_pairs(args.pairs, args.config, args.checkpoint, random_init=args.random_init,
                            errors=args.errors, ray_address=args.ray_address, concurrency=args.concurrency,
                            num_cpus=args.num_cpus, device=args.device, relative=args.relative,
                            adapt_movement_scale=args.adapt_movement_scale, layout=args.layout,
                            batch_size=args.batch_size, crop=args.crop, subject=args.subject,
                            paste_back=args.paste_back, smooth=args.smooth, precision=args.precision)
    print(json.dumps(summary))
    print(f"error table: {summary['errors']}")
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
