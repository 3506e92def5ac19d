"""Ray Data batch job: animate every (source, driving, output) row of a CSV, local or s3://, skipping done pairs.

python pipelines/animate.py --pairs pairs.csv --config configs/vox-256.yaml --checkpoint vox-cpk.pth.tar \
    [--crop auto|center|pad|none] [--subject N] [--no-paste-back] [--smooth S] \
    [--errors errors.csv] [--concurrency 2] [--num-cpus 1] [--ray-address auto]

The CSV has a header with at least `source,driving,output`; relative paths are relative to the CSV's folder.
A pair whose output exists is skipped; a pair that fails goes to the error table (CSV) and the job goes on.
The job itself is animate.batch.animate_pairs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from animate.batch import animate_pairs  # noqa: E402
from animate.cli import add_animation_flags, add_model_flags, check_animation_flags, weights  # noqa: E402
from services.cli import ArgumentParser, at_least, run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv, "animate")


def _main(argv: list[str]) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", required=True, help="CSV with source,driving,output columns (local or s3://)")
    add_model_flags(parser)
    parser.add_argument("--errors", help="error table CSV (default: next to --pairs, *.errors.csv)")
    add_animation_flags(parser)
    parser.add_argument("--concurrency", type=at_least(1), default=1, help="animator actors")
    parser.add_argument("--num-cpus", type=at_least(0.01, float), default=1, help="CPUs per actor")
    parser.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS or a local one)")
    args = parser.parse_args(argv)
    weights(args)
    check_animation_flags(args)
    summary = animate_pairs(**{k: v for k, v in vars(args).items() if k != "debug"})
    print(json.dumps(summary))
    print(f"error table: {summary['errors']}")
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
