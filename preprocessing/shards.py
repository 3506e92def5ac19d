"""Clip shards: the Parquet schema (one row per clip, frames as encoded images), atomic writes, readers.

Frame encoding is JPEG at quality 95 by default, chosen by measurement (benchmarks/bench_preprocess.py
--codecs; 256×256 talking-face frames, one core, OpenCV codecs): JPEG q95 11.8 KB/frame, 1.2 ms encode,
0.6 ms decode, 47 dB PSNR; PNG (lossless) 51-55 KB, 7.5-9.6 ms encode, 2.7-2.9 ms decode; WebP q90 4.0 KB,
10.8 ms encode, 0.9 ms decode, 44 dB; lossless WebP 31 KB, 98 ms encode. Training decodes every sampled
frame, so decode speed decides; JPEG is the fastest to decode and loses less than the 8-bit video it came
from. PNG and WebP stay selectable (`frame_format`), and the reader sniffs each image's own format.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services import checks, storage

SCHEMA_VERSION = 1
FRAME_FORMATS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}

CLIP_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("clip_id", pa.string()),
    ("person_id", pa.string()),
    ("split", pa.string()),
    ("num_frames", pa.int32()),
    ("fps", pa.float64()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("start_frame", pa.int32()),  # first source frame of the clip
    ("end_frame", pa.int32()),  # one past the last source frame
    ("crop_box", pa.list_(pa.int32(), 4)),  # x0, y0, x1, y1 in source pixels (x1, y1 exclusive)
    ("source_path", pa.string()),
    ("source_height", pa.int32()),
    ("source_width", pa.int32()),
    ("frame_format", pa.string()),
    ("frames", pa.list_(pa.binary())),  # T encoded images
])

ERROR_SCHEMA = pa.schema([
    ("path", pa.string()), ("video_id", pa.string()), ("stage", pa.string()), ("message", pa.string()),
])

MANIFEST_NAME = "_manifest.json"
ERRORS_NAME = "errors.parquet"
SHARDS_DIR = "shards"


@dataclass
class ClipRecord:
    """One row of a shard: a cropped, resized clip with its encoded frames."""

    video_id: str
    clip_id: str
    person_id: str
    split: str
    fps: float
    height: int
    width: int
    start_frame: int
    end_frame: int
    crop_box: tuple[int, int, int, int]
    source_path: str
    source_height: int
    source_width: int
    frames: list[bytes] = field(repr=False)
    frame_format: str = "jpeg"

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def to_row(self) -> dict:
        row = {name: getattr(self, name) for name in CLIP_SCHEMA.names if name != "num_frames"}
        row["num_frames"] = self.num_frames
        row["crop_box"] = [int(v) for v in self.crop_box]
        return row


@dataclass
class Clip:
    """A clip read back from a shard, frames decoded.  frames: T×H×W×3 uint8"""

    video_id: str
    clip_id: str
    person_id: str
    split: str
    fps: float
    frames: np.ndarray
    num_frames: int = 0
    crop_box: tuple[int, int, int, int] | None = None
    start_frame: int = 0
    end_frame: int = 0
    source_path: str = ""
    meta: dict = field(default_factory=dict)


def encode_frame(frame: np.ndarray, frame_format: str = "jpeg", quality: int = 95) -> bytes:
    """One H×W×3 uint8 RGB frame as JPEG / PNG / WebP bytes."""
    if frame_format not in FRAME_FORMATS:
        raise ValueError(f"frame_format {frame_format!r}: expected one of {sorted(FRAME_FORMATS)}")
    params = {"jpeg": [cv2.IMWRITE_JPEG_QUALITY, quality], "webp": [cv2.IMWRITE_WEBP_QUALITY, quality],
              "png": [cv2.IMWRITE_PNG_COMPRESSION, 1]}[frame_format]
    ok, buf = cv2.imencode(FRAME_FORMATS[frame_format], cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"could not encode a {frame.shape} frame as {frame_format}")
    return buf.tobytes()


def encode_frames(frames: Sequence[np.ndarray] | np.ndarray, frame_format: str = "jpeg",
                  quality: int = 95) -> list[bytes]:
    return [encode_frame(f, frame_format, quality) for f in frames]


def decode_frames(encoded: Sequence[bytes]) -> np.ndarray:
    """Encoded images (any of the formats) → T×H×W×3 uint8 RGB."""
    out = []
    for i, b in enumerate(encoded):
        img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"frame {i}: not a decodable image ({len(b)} bytes)")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def records_to_table(records: Sequence[ClipRecord]) -> pa.Table:
    return pa.Table.from_pylist([r.to_row() for r in records], schema=CLIP_SCHEMA)


def table_to_bytes(table: pa.Table) -> bytes:
    """Parquet bytes of a table; deterministic for equal tables (same rows, same writer options)."""
    sink = io.BytesIO()
    # frames are already compressed images: no Parquet compression on top, one row group per ~64 clips
    pq.write_table(table, sink, compression="NONE", row_group_size=64, use_dictionary=["split", "frame_format"],
                   write_statistics=["video_id", "person_id", "split", "num_frames"])
    return sink.getvalue()


def write_table_atomic(table: pa.Table, path: str, endpoint: str | None = None, fs=None) -> dict:  # noqa: ANN001
    """Write a Parquet file atomically; returns {'rows', 'bytes', 'sha256'} of what was written."""
    data = table_to_bytes(table)
    storage.write_bytes(path, data, endpoint=endpoint, fs=fs)
    return {"rows": table.num_rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_table(path: str, columns: list[str] | None = None, endpoint: str | None = None, fs=None,  # noqa: ANN001
               filters: list | None = None) -> pa.Table:
    if fs is None:
        fs, path = storage.resolve(path, endpoint)
    return pq.read_table(path, filesystem=fs, columns=columns, filters=filters)


def read_manifest(root: str, endpoint: str | None = None) -> dict:
    """The dataset manifest: shards (file, split, rows, bytes, sha256, videos) and totals."""
    path = storage.join(root, MANIFEST_NAME)
    try:
        return json.loads(storage.read_bytes(path, endpoint))
    except storage.StorageError as e:
        raise FileNotFoundError(f"{path}: no manifest; was the preprocessing job run on {root}?") from e


def read_errors(root: str, endpoint: str | None = None) -> list[dict]:
    """Rows of the error table: {'path', 'video_id', 'stage', 'message'} for every video that failed."""
    path = storage.join(root, ERRORS_NAME)
    if not storage.exists(path, endpoint):
        return []
    return read_table(path, endpoint=endpoint).to_pylist()


def list_shards(path: str, split: str | None = None, endpoint: str | None = None) -> list[str]:
    """Shard files of a dataset root (from its manifest), a folder of shards, or one shard file."""
    if storage.exists(storage.join(path, MANIFEST_NAME), endpoint):
        shards = read_manifest(path, endpoint)["shards"]
        return [storage.join(path, s["file"]) for s in shards if split is None or s["split"] == split]
    if storage.is_dir(path, endpoint):
        return storage.list_files(path, "*.parquet", endpoint=endpoint)
    return [path]


def row_to_clip(row: dict, decode: bool = True) -> Clip:
    frames = row.get("frames")
    decoded = decode_frames(frames) if decode and frames is not None else np.zeros((0, 0, 0, 3), np.uint8)
    known = {"video_id", "clip_id", "person_id", "split", "fps", "frames", "num_frames", "crop_box",
             "start_frame", "end_frame", "source_path"}
    return Clip(
        video_id=row.get("video_id", ""), clip_id=row.get("clip_id", ""), person_id=row.get("person_id", ""),
        split=row.get("split", ""), fps=float(row.get("fps") or 0.0), frames=decoded,
        num_frames=int(row.get("num_frames") or (len(frames) if frames is not None else 0)),
        crop_box=tuple(row["crop_box"]) if row.get("crop_box") is not None else None,
        start_frame=int(row.get("start_frame") or 0), end_frame=int(row.get("end_frame") or 0),
        source_path=row.get("source_path", ""), meta={k: v for k, v in row.items() if k not in known},
    )


def read_clips(path: str, split: str | None = None, columns: list[str] | None = None,
               endpoint: str | None = None, decode: bool = True) -> Iterator[Clip]:
    """Clips of a dataset root, shard folder or shard file, in shard order, frames decoded.

    `columns` limits what is read (leave out 'frames' to scan metadata only).
    """
    if columns is not None and split is not None and "split" not in columns:
        columns = [*columns, "split"]
    for shard in list_shards(path, split, endpoint):
        fs, p = storage.resolve(shard, endpoint)
        pf = pq.ParquetFile(p, filesystem=fs)
        for rg in range(pf.num_row_groups):
            table = pf.read_row_group(rg, columns=columns)
            if split is not None:
                table = table.filter(pc.equal(table["split"], split))
            for row in table.to_pylist():
                yield row_to_clip(row, decode=decode and "frames" in row)


SHARDS_EXPECTED = "clip shards: a dataset root, a folder of .parquet files or one .parquet file"


def require_shards(flag: str, path: str, split: str | None = None, endpoint: str | None = None) -> list[str]:
    """Before a job starts: the shard files of `path` (`list_shards`), or a UserError naming the flag.

    Checks that the path exists, holds shards (of `split`), and that each one is a readable Parquet file with
    clip columns (footers only: a half-written shard among good ones fails here, not after Ray started).
    """
    from services.cli import UserError

    checks.storage_reachable(flag, path, endpoint)
    if not storage.is_remote(path) and not Path(path).exists():
        raise UserError(f"{flag} {path}: no such file or folder (expected {SHARDS_EXPECTED})")
    try:
        found = list_shards(path, split, endpoint)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise UserError(f"{flag} {path}: not readable as {SHARDS_EXPECTED} ({str(err).splitlines()[0]})") from None
    if not found:
        where = f" of split {split!r}" if split else ""
        raise UserError(f"{flag} {path}: no shards{where} (expected {SHARDS_EXPECTED})")
    for shard in found:
        try:
            fs, local = storage.resolve(shard, endpoint)
            names = set(pq.read_schema(local, filesystem=fs).names)
        except (OSError, ValueError, pa.ArrowException) as err:
            where = path if shard == path else shard
            raise UserError(f"{flag} {where}: not readable as {SHARDS_EXPECTED} ({str(err).splitlines()[0]})") \
                from None
        missing = {"clip_id", "frames"} - names
        if missing:
            raise UserError(f"{flag} {shard}: not a clip shard (no column {sorted(missing)[0]!r})")
    return found
