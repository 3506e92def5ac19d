"""Evaluate a FOMM checkpoint by video reconstruction (paper Sec. 4, Table 3): L1, AKD, MKR, AED → MLflow.

python pipelines/evaluate.py --config configs/vox-256.yaml --checkpoint vox-cpk.pth.tar --data shards/ \
    [--tracking-uri URI] [--max-videos N] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys

from evaluation.cli import add_eval_arguments, eval_config_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_eval_arguments(parser)
    args = parser.parse_args(argv)
    cfg = eval_config_from_args(args, experiment="fomm-eval")

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
