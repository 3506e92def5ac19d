"""The original FOMM's animate mode as batch rows: pairs of a dataset's clips (source, driving), each animated into a
file of its own under --out; from a pairs list (its source,driving CSV of video names) or drawn at random."""

from __future__ import annotations

import numpy as np

from preprocessing.shard_set import ShardSet
from preprocessing.shards import decode_frames
from services import storage, user_csv
from services.cli import UserError
from services.video_read import FRAME_EXTENSIONS, VIDEO_EXTENSIONS

PAIRS_SEED = 0  # the same pairs on every run and machine


def _named(meta: list[dict], name: str) -> str | None:
    """The clip a pairs-list cell names: a clip id, or the first clip of a video named with or without its
    extension (the original's lists name test videos, id10283#…#000328.mp4; preprocess prefixed its folder, test__)."""
    stem = name.rsplit("/", 1)[-1]
    stem = stem[: -len(ext)] if (ext := next((e for e in (*VIDEO_EXTENSIONS, *FRAME_EXTENSIONS)
                                             if stem.lower().endswith(e)), "")) else stem
    return next((m["clip_id"] for m in meta if name == m["clip_id"] or m["video_id"] in (name, stem)
                 or m["video_id"].endswith(f"__{stem}")), None)


def listed_pairs(pairs_list: str, meta: list[dict], endpoint: str | None) -> list[tuple[str, str]]:
    """(source, driving) clip ids of a pairs list; a name no clip answers is refused, naming its line."""
    try:
        names, rows = user_csv.csv_table(storage.read_bytes(pairs_list, endpoint))
    except (UnicodeDecodeError, ValueError):
        raise UserError(f"--pairs-list {pairs_list}: not a text CSV with source,driving columns") from None
    if not {"source", "driving"} <= set(map(user_csv.csv_key, names)):
        raise UserError(f"--pairs-list {pairs_list}: expected source,driving columns (the original's pairs lists), "
                        f"it has {names}")
    pairs = []
    for line, row in enumerate(rows, start=2):
        cells = {c: (row.get(c) or "").strip() for c in ("source", "driving")}
        if empty := next((c for c, name in cells.items() if not name), None):
            raise UserError(f"--pairs-list {pairs_list} line {line}: no {empty} (every row names a source and a "
                            "driving video)")
        clips = {c: _named(meta, name) for c, name in cells.items()}
        if missing := next((c for c, clip in clips.items() if clip is None), None):
            raise UserError(f"--pairs-list {pairs_list} line {line}: no clip of {cells[missing]!r} in --data's split")
        pairs.append((clips["source"], clips["driving"]))
    if not pairs:
        raise UserError(f"--pairs-list {pairs_list}: no rows below the header (nothing to animate)")
    return pairs


def random_pairs(clip_ids: list[str], num_pairs: int) -> list[tuple[str, str]]:
    """The original's draw: `num_pairs` distinct (source, driving) cells of the grid of the first `num_pairs`
    clips, a clip with itself included (a reconstruction)."""
    n = min(num_pairs, len(clip_ids))
    cells = np.random.default_rng(PAIRS_SEED).choice(n * n, size=min(num_pairs, n * n), replace=False)
    return [(clip_ids[c // n], clip_ids[c % n]) for c in sorted(cells)]


def dataset_rows(clips: ShardSet, data: str, split: str, out: str, suffix: str, num_pairs: int,
                 pairs_list: str | None, endpoint: str | None = None) -> list[dict[str, str]]:
    """The batch rows of the animate mode: source and driving clip ids, and the output, `driving-source` + suffix in
    `out` (as the original named them; characters other than letters, digits, '.', '_' and '-' as '_')."""
    meta = [m for m in clips.meta.to_pylist() if m["split"] == split]
    if not meta:
        raise UserError(f"--data {data}: no clips in split {split!r} (--split)")
    pairs = listed_pairs(pairs_list, meta, endpoint) if pairs_list else random_pairs(
        [m["clip_id"] for m in meta], num_pairs)
    return [{"source": s, "driving": d, "output": storage.join(out, storage.safe_name(f"{d}-{s}{suffix}"))}
            for s, d in pairs]


def read_pair(shard_set: ShardSet, source: str, driving: str) -> tuple[np.ndarray, np.ndarray, float]:
    """The source clip's first frame, the driving clip's frames and frame rate.  # H×W×3, T×H×W×3"""
    rows = {r["clip_id"]: r for r in shard_set.rows([source, driving], ["clip_id", "frames", "fps"])}
    if missing := [c for c in (source, driving) if c not in rows]:
        raise ValueError(f"clip {missing[0]}: not in the dataset (a shard changed since the job was planned?)")
    return decode_frames(rows[source]["frames"][:1])[0], decode_frames(rows[driving]["frames"]), rows[driving]["fps"]
