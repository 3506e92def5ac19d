"""Clip shards: the Parquet schema (one row per clip, frames as encoded images), atomic writes, readers.

Frames default to JPEG q95, as training decodes every sampled frame: 0.6 ms against PNG's 2.7 ms and WebP's
0.9 ms, at 47 dB (bench_preprocess.py --codecs, 256² faces). The reader sniffs each image's own format."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from services import storage

SCHEMA_VERSION = 1
FRAME_FORMATS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}

CLIP_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("clip_id", pa.string()), ("person_id", pa.string()), ("split", pa.string()),
    ("num_frames", pa.int32()), ("fps", pa.float64()), ("height", pa.int32()), ("width", pa.int32()),
    ("start_frame", pa.int32()),  # first source frame of the clip
    ("end_frame", pa.int32()),  # one past the last source frame
    ("crop_box", pa.list_(pa.int32(), 4)),  # x0, y0, x1, y1 in source pixels (x1, y1 exclusive)
    ("source_path", pa.string()), ("source_height", pa.int32()), ("source_width", pa.int32()),
    ("frame_format", pa.string()),
    ("frames", pa.list_(pa.binary())),  # T encoded images
])

ERROR_SCHEMA = pa.schema([(name, pa.string()) for name in ("path", "video_id", "stage", "message")])

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


def decode_frames(encoded: Sequence[bytes]) -> np.ndarray:
    """Encoded images (any of the formats) → T×H×W×3 uint8 RGB."""
    out = []
    for i, b in enumerate(encoded):
        img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) if b else None  # 0 bytes: it asserts
        if img is None:
            raise ValueError(f"frame {i}: not a decodable image ({len(b)} bytes)")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def records_to_table(records: Sequence[ClipRecord]) -> pa.Table:
    rows = [{name: getattr(r, name) for name in CLIP_SCHEMA.names} for r in records]
    return pa.Table.from_pylist(rows, schema=CLIP_SCHEMA)


def write_table_atomic(table: pa.Table, path: str, fs=None) -> dict:  # noqa: ANN001
    """Write a Parquet file atomically, its bytes the same for equal tables; returns {'rows', 'bytes', 'sha256'}."""
    sink = io.BytesIO()
    # frames are already compressed images: no Parquet compression on top, one row group per ~64 clips
    pq.write_table(table, sink, compression="NONE", row_group_size=64, use_dictionary=["split", "frame_format"],
                   write_statistics=["video_id", "person_id", "split", "num_frames"])
    data = sink.getvalue()
    storage.write_bytes(path, data, fs=fs)
    return {"rows": table.num_rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_table(path: str, columns: list[str] | None = None, endpoint: str | None = None, fs=None,  # noqa: ANN001
               filters: list | None = None) -> pa.Table:
    if fs is None:
        fs, path = storage.resolve(path, endpoint)
    return pq.read_table(path, filesystem=fs, columns=columns, filters=filters)


def parse_manifest(data: bytes, path: str) -> dict:
    """A manifest's JSON, else a ValueError naming `path` (a damaged or edited file: a traceback before)."""
    try:
        manifest = json.loads(data)
        if not all(isinstance(e["file"], str) and isinstance(e["split"], str) for e in manifest["shards"]):
            raise TypeError("a shard's file or split is not text")
        if not isinstance(manifest.get("videos", {}), dict):
            raise TypeError("'videos' is not a mapping")
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"{path}: a damaged dataset manifest ({type(err).__name__}: {err})") from None
    return manifest


def read_manifest(root: str, endpoint: str | None = None) -> dict:
    """The dataset manifest: shards (file, split, rows, bytes, sha256, videos) and totals."""
    path = storage.join(root, MANIFEST_NAME)
    try:
        return parse_manifest(storage.read_bytes(path, endpoint), path)
    except storage.StorageError as e:
        raise FileNotFoundError(f"{path}: no manifest; was the preprocessing job run on {root}?") from e


def read_errors(root: str, endpoint: str | None = None) -> list[dict]:
    """Rows of the error table: {'path', 'video_id', 'stage', 'message'} for every video that failed."""
    path = storage.join(root, ERRORS_NAME)
    return read_table(path, endpoint=endpoint).to_pylist() if storage.exists(path, endpoint) else []
