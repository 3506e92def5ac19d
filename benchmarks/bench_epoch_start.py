"""Epoch start as the dataset grows: seconds from opening a dataset of 100, 1,000 and 10,000 small Parquet shards
(local files) to its split index, its first block and its first training batch. Prints JSON.

python benchmarks/bench_epoch_start.py [--shards 100 1000 10000] [--frames 4] [--no-ray]

Each shard holds one clip of `--frames` 64² JPEG frames (the demo-64 size; one frame encoded once, ids distinct,
every 10th clip held out, 50 persons), listed in a `_manifest.json` as preprocessing writes it. The steps are
training's (training/trainer.py, training/data.py): `open` (ShardSet.open: the manifest), `index` (the train and
test clip indexes: every shard's metadata columns, read once), `plan` (the pair spec, the epoch's size, the
validation clips), `first_block` (the first train shard read whole) and `first_pairs` (its clip → augmented pairs).
`ray_first_batch`: the first batch of demo-64's size from training's Ray Data stream (data.train_dataset), on a
local Ray started beforehand (its start is not counted). Goal: every step's time per shard flat or falling.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fomm.config.schema import load_config  # noqa: E402
from preprocessing import shards  # noqa: E402
from preprocessing.shard_set import ShardSet  # noqa: E402
from training import data  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_dataset(root: Path, num_shards: int, num_frames: int) -> float:
    """`num_shards` one-clip shards and their manifest under `root`; returns the seconds it took."""
    start = time.perf_counter()
    frame = shards.encode_frame(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    entries = []
    for i in range(num_shards):
        split = "test" if i % 10 == 9 else "train"
        record = shards.ClipRecord(
            video_id=f"v{i:06d}", clip_id=f"v{i:06d}_000", person_id=f"id{i % 50:02d}", split=split, fps=25.0,
            height=64, width=64, start_frame=0, end_frame=num_frames, crop_box=(0, 0, 64, 64), source_path="bench",
            source_height=64, source_width=64, frames=[frame] * num_frames)
        name = f"shards/{split}/shard-{i:05d}.parquet"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        info = shards.write_table_atomic(shards.records_to_table([record]), str(root / name))
        entries.append({"file": name, "split": split, **info, "frames": num_frames, "videos": [record.video_id]})
    (root / shards.MANIFEST_NAME).write_text(json.dumps({"version": shards.SCHEMA_VERSION, "shards": entries}))
    return time.perf_counter() - start


def timed(fn):  # noqa: ANN001, ANN201 - a callable and what it returns
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def epoch_start(root: Path, use_ray: bool) -> dict[str, float]:
    """Seconds of each step from opening the dataset to its first batch."""
    cfg = load_config(ROOT / "configs" / "demo-64.yaml")
    times = {}
    shard_set, times["open"] = timed(lambda: ShardSet.open(str(root)))
    (train, test), times["index"] = timed(lambda: (data.clip_index(shard_set, "train"),
                                                   data.clip_index(shard_set, "test")))

    def plan() -> data.PairSpec:
        data.samples_per_epoch(train, cfg.train_params.num_repeats, cfg.dataset_params.id_sampling)
        data.choose_val_clips(test, 8)
        return data.PairSpec.from_config(cfg, train)

    spec, times["plan"] = timed(plan)
    block, times["first_block"] = timed(lambda: shards.read_table(shard_set.paths("train")[0], data.READ_COLUMNS,
                                                               fs=shard_set.location.fs))
    _, times["first_pairs"] = timed(lambda: data.clips_to_pairs(block, spec, np.random.default_rng(0)))
    if use_ray:
        batch_size = cfg.train_params.batch_size
        batches = iter(data.train_dataset(shard_set, spec).iter_batches(batch_size=batch_size))
        _, times["ray_first_batch"] = timed(lambda: next(batches))
        batches.close()  # the stream stops here, not while the next size is measured
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--frames", type=int, default=4, help="frames per clip")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray Data stream's first batch")
    args = p.parse_args()
    if not args.no_ray:
        from services.ray_start import ensure_ray

        ensure_ray(None, num_cpus=2, log_to_driver=False)
    sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm"
        write_dataset(warm, 10, args.frames)
        epoch_start(warm, not args.no_ray)  # imports and Ray Data's first plan, not counted
        for n in args.shards:
            root = Path(tmp) / f"d{n}"
            written = write_dataset(root, n, args.frames)
            times = epoch_start(root, not args.no_ray)
            sizes.append({"shards": n, "write_s": round(written, 2),
                          **{f"{k}_s": round(v, 4) for k, v in times.items()},
                          "total_s": round(sum(times.values()), 3),
                          "us_per_shard": {k: round(1e6 * v / n, 1) for k, v in times.items()}})
    growth = {k: round(sizes[-1]["us_per_shard"][k] / max(sizes[0]["us_per_shard"][k], 1e-9), 2)
              for k in sizes[0]["us_per_shard"]}
    print(json.dumps({"benchmark": "epoch_start", "frames_per_clip": args.frames, "sizes": sizes,
                      "per_shard_growth_smallest_to_largest": growth}, indent=1))


if __name__ == "__main__":
    main()
