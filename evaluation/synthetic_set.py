"""A fixed synthetic evaluation set written straight to clip shards (no video encode / preprocessing run).

Frames come from `preprocessing.synthetic.render_video` and are stored with `preprocessing.shards`' own schema
and writer (lossless PNG frames, as the original evaluation used), so tests, the demo and the scheduled
benchmark can evaluate without the preprocessing job.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_synthetic_shards(out_dir: str | Path, num_videos: int = 4, size: int = 64, num_frames: int = 12,
                           seed: int = 0, split: str = "test", frame_format: str = "png",
                           num_identities: int = 2) -> Path:
    """Write one shard `<out_dir>/synthetic-<seed>.parquet` of `num_videos` clips; returns its path."""
    from preprocessing.shards import ClipRecord, encode_frames, records_to_table, write_table_atomic
    from preprocessing.synthetic import make_identity, render_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    identities = [make_identity(np.random.default_rng([seed, 1, i]), i / num_identities)
                  for i in range(num_identities)]
    records = []
    for v in range(num_videos):
        frames = render_video(identities[v % num_identities], np.random.default_rng([seed, 2, v]), size,
                              num_frames, 25.0)  # T×H×W×3 uint8
        records.append(ClipRecord(
            video_id=f"synth{v:04d}", clip_id=f"synth{v:04d}_000", person_id=f"id{v % num_identities:02d}",
            split=split, fps=25.0, height=size, width=size, start_frame=0, end_frame=num_frames,
            crop_box=(0, 0, size, size), source_path="synthetic", source_height=size, source_width=size,
            frames=encode_frames(frames, frame_format), frame_format=frame_format))
    path = out / f"synthetic-{seed}.parquet"
    write_table_atomic(records_to_table(records), str(path))
    return path
