"""Ray Data for training: Parquet clip shards → random frame pairs (train) and fixed frame sets (validation).

Sampling follows the original FOMM: two frames of one clip, uniform with replacement, sorted in time and augmented
identically (`preprocessing.pairs`); an epoch visits every clip (with `id_sampling`: every person id, see
`repeat_counts`) `num_repeats` times. Each clip row is read once per epoch and emits all its samples there (decoded
in Ray Data tasks, mixed by each worker's shuffle buffer).
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import pyarrow as pa

from fomm.config.schema import AugmentationParams, FommConfig
from preprocessing import shards
from preprocessing.pairs import augment_pair, sample_pair
from preprocessing.shard_set import META_COLUMNS, ClipIndex, ShardSet
from services.cli import UserError

READ_COLUMNS = [*META_COLUMNS, "frames"]


class DataError(UserError, ValueError):
    """Shards that cannot feed training (no clips of a split, clips too short); names the path."""


def clip_index(shard_set: ShardSet, split: str) -> ClipIndex:
    """The clips of `split` that have frames, sorted by clip id (from the set's metadata, read once)."""
    found = shard_set.index(split)
    keep = sorted((c, p, n) for c, p, n in zip(found.clip_ids, found.person_ids, found.num_frames) if n > 0)
    return ClipIndex(*(tuple(column) for column in zip(*keep))) if keep else ClipIndex((), (), ())


def samples_per_epoch(index: ClipIndex, num_repeats: int, id_sampling: bool) -> int:
    """Expected samples in one epoch, as the original's dataset length × num_repeats."""
    return (len(index.clips_per_person) if id_sampling else len(index)) * num_repeats


# ---------------------------------------------------------------- plain functions (tested without Ray)


@dataclass(frozen=True)
class PairSpec:
    """What turning clips into samples needs; small and picklable (shipped to every Ray Data task)."""

    frame_shape: tuple[int, int]  # H, W the model trains at
    num_repeats: int = 1
    id_sampling: bool = False
    augment: AugmentationParams = field(default_factory=AugmentationParams)
    clips_per_person: dict[str, int] = field(default_factory=dict)  # only read with id_sampling
    split: str = "train"

    @classmethod
    def from_config(cls, cfg: FommConfig, index: ClipIndex, split: str = "train") -> PairSpec:
        dp = cfg.dataset_params
        return cls((int(dp.shape[0]), int(dp.shape[1])), cfg.train_params.num_repeats, dp.id_sampling,
                   dp.augmentation_params, index.clips_per_person if dp.id_sampling else {}, split)


def repeat_counts(person_ids: Sequence[str], spec: PairSpec, rng: np.random.Generator) -> np.ndarray:
    """Samples each clip emits this epoch: num_repeats, or with id sampling Binomial(num_repeats, 1/n) for a clip of
    a person with n clips (each sample: a person with odds 1/#ids, then one of its clips with 1/n, as the original's)."""
    if not spec.id_sampling:
        return np.full(len(person_ids), spec.num_repeats, dtype=np.int64)
    n = np.array([spec.clips_per_person.get(p, 1) for p in person_ids], dtype=np.float64)
    return rng.binomial(spec.num_repeats, 1.0 / n).astype(np.int64)


def fit_frame(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A decoded H×W×3 frame at the model's frame shape (area resampling when the shard size differs)."""
    if frame.shape[:2] == tuple(shape):
        return frame
    return cv2.resize(frame, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def clips_to_pairs(batch: pa.Table, spec: PairSpec, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Clip rows (with encoded frames) → augmented samples {'source', 'driving': N×H×W×3 uint8}."""
    rng = rng if rng is not None else np.random.default_rng()
    h, w = spec.frame_shape
    pairs = []  # (source, driving) samples
    if batch.num_rows:
        keep = [i for i, s in enumerate(batch.column("split").to_pylist()) if s == spec.split]
        person, video = batch.column("person_id").to_pylist(), batch.column("video_id").to_pylist()
        for row, count in zip(keep, repeat_counts([person[i] or video[i] for i in keep], spec, rng)):
            frames = batch.column("frames")[row].values  # BinaryArray, T encoded images
            for _ in range(count):
                i, j = sample_pair(len(frames), rng)
                try:
                    src, drv = shards.decode_frames([frames[i].as_py(), frames[j].as_py()])
                except ValueError as err:  # a damaged image costs one sample, not the epoch
                    clip_id = batch.column("clip_id")[row].as_py()
                    logging.getLogger(__name__).warning("clip %s, frames %d/%d: %s", clip_id, i, j, err)
                    continue
                pairs.append(augment_pair(fit_frame(src, (h, w)), fit_frame(drv, (h, w)), rng, spec.augment))
    stacked = [np.stack(frames) for frames in zip(*pairs)] if pairs else [np.zeros((0, h, w, 3), np.uint8)] * 2
    return dict(zip(("source", "driving"), stacked))


def val_frame_indices(num_frames: int, count: int) -> np.ndarray:
    """`count` evenly spaced frame indices from 0 to the last frame (0 first: it is the source)."""
    return np.linspace(0, num_frames - 1, num=count).round().astype(np.int64)


def clips_to_val_frames(batch: pa.Table, frame_shape: tuple[int, int], count: int,
                        keep_ids: frozenset[str] | None = None) -> dict[str, np.ndarray]:
    """Held-out clip rows → {'frames': N×F×H×W×3 uint8, 'clip_id'}: F evenly spaced frames per clip."""
    out, ids = [], []
    for row in range(batch.num_rows):
        clip_id = batch.column("clip_id")[row].as_py()
        if keep_ids is not None and clip_id not in keep_ids:
            continue
        frames = batch.column("frames")[row].values
        picked = shards.decode_frames([frames[int(i)].as_py() for i in val_frame_indices(len(frames), count)])
        out.append(np.stack([fit_frame(f, frame_shape) for f in picked]))
        ids.append(clip_id)
    frames = np.stack(out) if out else np.zeros((0, count, *frame_shape, 3), np.uint8)
    return {"frames": frames, "clip_id": np.array(ids, dtype=object)}


# ---------------------------------------------------------------- Ray Data plans


def _nonempty(fn, key: str):  # noqa: ANN001, ANN202
    """A Ray Data UDF yielding fn's batch only when it has rows (an empty numpy batch would lose its tensor type)."""
    def udf(batch: pa.Table) -> Iterator[dict[str, np.ndarray]]:
        out = fn(batch)
        if len(out[key]):
            yield out
    return udf


def train_dataset(shard_set: ShardSet, spec: PairSpec):  # noqa: ANN201
    """Streaming dataset of augmented frame pairs; every pass over it is a fresh epoch."""
    # files shuffled per epoch, samples mixed by each worker's shuffle buffer: no all-to-all step; one clip per
    # block: clips decode in parallel tasks and stream out one by one, so an epoch's first batch waits for one
    # clip, not for the whole shard (a read task returns a shard as one block)
    ds = shard_set.dataset(spec.split, READ_COLUMNS, shuffle_files=True).repartition(target_num_rows_per_block=1)
    # one clip per call: its num_repeats samples form one output batch, so memory stays bounded at 256²
    return ds.map_batches(_nonempty(functools.partial(clips_to_pairs, spec=spec), "source"), batch_size=1,
                          batch_format="pyarrow", num_cpus=1)


def val_dataset(shard_set: ShardSet, split: str, clip_ids: Sequence[str], frame_shape: tuple[int, int],
                count: int):  # noqa: ANN201
    """The chosen held-out clips' frames, decoded once and kept in the object store for every epoch."""
    fn = functools.partial(clips_to_val_frames, frame_shape=frame_shape, count=count, keep_ids=frozenset(clip_ids))
    ds = shard_set.dataset(split, READ_COLUMNS)
    return ds.map_batches(_nonempty(fn, "frames"), batch_size=8, batch_format="pyarrow", num_cpus=1).materialize()


def choose_val_clips(index: ClipIndex, count: int, multiple_of: int = 1) -> list[str]:
    """The first `count` held-out clips in clip-id order, one per person first, trimmed to a multiple."""
    by_person: dict[str, list[str]] = {}
    for clip_id, person in zip(index.clip_ids, index.person_ids):
        by_person.setdefault(person, []).append(clip_id)
    rounds = itertools.zip_longest(*(by_person[p] for p in sorted(by_person)))  # round-robin: varied identities
    order = [clip_id for clips in rounds for clip_id in clips if clip_id is not None][:count]
    return order[: len(order) - len(order) % multiple_of]
