"""Read shards for training and evaluation: clips, and random source/driving frame pairs (no Ray).

Only the two sampled frames of a clip are decoded. `iter_frame_pairs` keeps the encoded frames of one split
in memory (a few MB for the demo sets); ray_jobs.frame_pairs_dataset streams large sets with Ray Data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from preprocessing import shards, storage
from preprocessing.pairs import AugmentParams, EpochSampler, augment_pair, sample_pair

PAIR_COLUMNS = ["video_id", "clip_id", "person_id", "split", "num_frames", "frames"]


def load_split(path: str, split: str | None = "train", endpoint: str | None = None,
               columns: list[str] | None = None) -> pa.Table:
    """One split of a dataset (root, shard folder or file) as one table, in shard order."""
    tables = []
    for shard in shards.list_shards(path, split, endpoint):
        fs, p = storage.resolve(shard, endpoint)
        t = pq.read_table(p, filesystem=fs, columns=columns or PAIR_COLUMNS)
        if split is not None:
            t = t.filter(pc.equal(t["split"], split))
        tables.append(t)
    if not tables:
        raise FileNotFoundError(f"{path}: no shards with split {split!r}")
    return pa.concat_tables(tables)


def make_pair(frames: list[bytes] | pa.ListScalar, rng: np.random.Generator,
              augment: AugmentParams | Mapping | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(source, driving, i_source, i_driving) from one clip's encoded frames.  each H×W×3 uint8"""
    n = len(frames)
    i, j = sample_pair(n, rng)
    get = (lambda k: frames[k].as_py()) if isinstance(frames, pa.ListScalar) else (lambda k: frames[k])
    source, driving = shards.decode_frames([get(i), get(j)])
    if augment is not None:
        source, driving = augment_pair(source, driving, rng, augment)
    return source, driving, i, j


def iter_frame_pairs(path: str, split: str = "train", num_repeats: int = 1, id_sampling: bool = False,
                     seed: int = 0, epoch: int = 0, augment: AugmentParams | Mapping | None = None,
                     endpoint: str | None = None) -> Iterator[dict]:
    """One epoch of training samples: {'source', 'driving', 'video_id', 'clip_id', 'person_id', 'frame_ids'}."""
    table = load_split(path, split, endpoint)
    sampler = EpochSampler(table["person_id"].to_pylist(), num_repeats, id_sampling, seed)
    rng = np.random.default_rng([seed, epoch, 1])
    frames_col = table["frames"]
    for k in sampler.epoch(epoch):
        k = int(k)
        source, driving, i, j = make_pair(frames_col[k], rng, augment)
        yield {"source": source, "driving": driving, "video_id": table["video_id"][k].as_py(),
               "clip_id": table["clip_id"][k].as_py(), "person_id": table["person_id"][k].as_py(),
               "frame_ids": (i, j)}
