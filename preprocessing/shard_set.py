"""The dataset as a value: a ShardSet opens a dataset's shards once (its manifest, else a listing), knows each
file's split, reads the clips' metadata once, rows by clip id, and the files as a Ray Dataset; `require_shards`
checks a --data flag with it before Ray starts."""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from preprocessing.shards import CLIP_SCHEMA, MANIFEST_NAME, parse_manifest, read_table
from services import checks, storage
from services.cli import UserError

META_COLUMNS = ["clip_id", "video_id", "person_id", "split", "num_frames"]
META_SCHEMA = pa.schema([*(CLIP_SCHEMA.field(n) for n in META_COLUMNS), ("file", pa.string())])
META_READERS = 16  # files whose metadata is read at once (round trips in flight on S3)
SHARDS_EXPECTED = "clip shards: a dataset root, a folder of .parquet files or one .parquet file"


@dataclass(frozen=True)
class ClipIndex:
    """Metadata of clips (no frames), in shard order: what selection, epoch sizes and id sampling need."""

    clip_ids: tuple[str, ...]
    person_ids: tuple[str, ...]  # the person id, else the video id
    num_frames: tuple[int, ...]

    @property
    def clips_per_person(self) -> dict[str, int]:
        return dict(Counter(self.person_ids))

    def __len__(self) -> int:
        return len(self.clip_ids)


@dataclass(frozen=True)
class ShardSet:
    """The shard files of a dataset root (its manifest), a folder of .parquet files or one file, listed once;
    picklable (a `Location` and paths, no keys), its clips' metadata read on first use."""

    location: storage.Location  # where the files are; `files` are paths inside its filesystem
    files: tuple[str, ...]
    splits: tuple[str | None, ...]  # each file's split from the manifest (None: not known, may hold any)

    @classmethod
    def open(cls, url: str, endpoint: str | None = None) -> ShardSet:
        location = storage.Location(str(url).rstrip("/"), endpoint)
        fs, root = location.fs, location.path()
        try:
            manifest = parse_manifest(fs.cat_file(f"{root}/{MANIFEST_NAME}"), location.uri_of(f"{root}/{MANIFEST_NAME}"))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            files = sorted(f for f in fs.find(root) if f.endswith(".parquet") and "/." not in f) \
                if fs.isdir(root) else [root]
            return cls(location, tuple(files), (None,) * len(files))
        entries = manifest["shards"]
        return cls(location, tuple(f"{root}/{e['file']}" for e in entries), tuple(e["split"] for e in entries))

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "meta"}  # the metadata stays where it was read

    def paths(self, split: str | None = None) -> list[str]:
        """Files that may hold clips of `split` (None: all), as paths inside `location.fs`."""
        return [f for f, s in zip(self.files, self.splits) if split is None or s in (None, split)]

    def uris(self, split: str | None = None) -> list[str]:
        """The same files as URLs (s3:// kept) or local paths."""
        return [self.location.uri_of(f) for f in self.paths(split)]

    @functools.cached_property
    def meta(self) -> pa.Table:
        """Metadata of every clip (META_COLUMNS and `file`) in shard order; files read concurrently on S3."""
        readers = META_READERS if storage.is_remote(self.location.url) else 1  # local: threads only cost here
        with ThreadPoolExecutor(max(1, min(readers, len(self.files)))) as pool:
            return pa.concat_tables([META_SCHEMA.empty_table(), *pool.map(self._file_meta, self.files)])

    def _file_meta(self, path: str) -> pa.Table:
        with _decoded(self.location, path):
            pf = pq.ParquetFile(path, filesystem=self.location.fs)
            table = pf.read(columns=[c for c in META_COLUMNS if c in pf.schema_arrow.names], use_threads=False)
        columns = [table[c] if c in table.column_names else pa.nulls(table.num_rows) for c in META_COLUMNS]
        return pa.table([*columns, [path] * table.num_rows], names=META_SCHEMA.names).cast(META_SCHEMA)

    def index(self, split: str | None = None, limit: int | None = None) -> ClipIndex:
        """The clips of `split` (None: all) in shard order, the first `limit` of them."""
        rows = [r for r in self.meta.to_pylist() if split is None or r["split"] == split][:limit]
        return ClipIndex(tuple(r["clip_id"] for r in rows), tuple(r["person_id"] or r["video_id"] for r in rows),
                         tuple(int(r["num_frames"] or 0) for r in rows))

    def holding(self, clip_ids: Sequence[str]) -> list[str]:
        """The files that hold any of the given clips."""
        wanted = set(clip_ids)
        return sorted({r["file"] for r in self.meta.select(["clip_id", "file"]).to_pylist() if r["clip_id"] in wanted})

    def rows(self, clip_ids: Sequence[str], columns: list[str] | None = None) -> list[dict]:
        """Whole rows (frames included) of the given clips, in the order asked; only their files are read."""
        rows = {r["clip_id"]: r for f in self.holding(clip_ids) for r in _read_shard(
            self.location, f, columns, filters=[("clip_id", "in", sorted(set(clip_ids)))]).to_pylist()}
        return [rows[c] for c in clip_ids if c in rows]

    def dataset(self, split: str | None, columns: Sequence[str], shuffle_files: bool = False,
                paths: Sequence[str] | None = None):  # noqa: ANN201 - a ray.data.Dataset
        """The files' rows as a Ray Dataset, one read task per file (shuffled each pass with `shuffle_files`).

        Not `read_parquet`: its file listing and metadata tasks added 5–8 s to the start of every epoch."""
        import ray.data

        paths = list(paths if paths is not None else self.paths(split))
        ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=max(1, len(paths)))
        if shuffle_files:
            ds = ds.randomize_block_order()
        read = functools.partial(_read_files, location=self.location, columns=list(columns))  # URL, no keys
        return ds.map_batches(read, batch_size=1, batch_format="pyarrow")


def _read_files(batch: pa.Table, location: storage.Location, columns: list[str]) -> pa.Table:
    """Ray Data UDF: the rows of the files named in the batch's `path` column."""
    return pa.concat_tables([_read_shard(location, p, columns) for p in batch.column("path").to_pylist()])


def _read_shard(location: storage.Location, path: str, columns: list[str] | None, filters: list | None = None
                ) -> pa.Table:
    """One shard's rows (a damaged one: see _decoded)."""
    with _decoded(location, path):
        return read_table(path, columns, fs=location.fs, filters=filters)


@contextlib.contextmanager
def _decoded(location: storage.Location, path: str) -> Iterator[None]:
    """Bytes of the shard at `path` that do not decode (a damaged file) are a UserError naming it; I/O errors (the
    disk's, the network's: they carry an errno) stay what they are."""
    try:
        yield
    except (pa.ArrowInvalid, OSError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise
        raise UserError(f"{location.uri_of(path)}: a damaged clip shard ({str(err).splitlines()[0]})") from None


def require_shards(flag: str, path: str, split: str | None = None, endpoint: str | None = None,
                   frame_shape: Sequence[int] | None = None) -> ShardSet:
    """The ShardSet of `path`, every footer read (half-written shards fail here, before Ray); else a UserError. With
    `frame_shape` (H, W the model sees), clips smaller than it get a note: each frame would be upsampled."""
    from services.video_read import VIDEO_EXTENSIONS

    checks.storage_reachable(flag, path, endpoint)
    if path.lower().endswith(VIDEO_EXTENSIONS) and storage.exists(path, endpoint) and \
            not storage.is_dir(path, endpoint):  # a raw video given where its clips go
        raise UserError(f"{flag} {path}: a video, not {SHARDS_EXPECTED} (make them with python pipelines/"
                        f"preprocess.py --input {path} --output DATASET, then give DATASET here)")
    if not storage.is_remote(path):
        if not Path(path).exists():
            raise UserError(f"{flag} {path}: no such file or folder (expected {SHARDS_EXPECTED})")
        checks.file_or_folder(flag, path, SHARDS_EXPECTED)
    where = path  # what an unreadable footer or manifest is reported as: the root, then each shard
    try:
        found = ShardSet.open(path, endpoint)
        if not found.paths(split):
            of_split = f" of split {split!r}" if split else ""
            if not storage.is_remote(path) and Path(path).is_dir() and \
                    any(p.name.lower().endswith(VIDEO_EXTENSIONS) for p in Path(path).iterdir()):
                raise UserError(f"{flag} {path}: a folder of videos, no shards{of_split} (make them with python "
                                f"pipelines/preprocess.py --input {path} --output DATASET, then give DATASET here)")
            raise UserError(f"{flag} {path}: no shards{of_split} (expected {SHARDS_EXPECTED})")
        columns = {}  # shard → its column names
        for shard, where in zip(found.paths(split), found.uris(split)):
            columns[shard] = set(pq.read_schema(shard, filesystem=found.location.fs).names)
            if missing := sorted({"clip_id", "frames"} - columns[shard]):
                raise UserError(f"{flag} {where}: not a clip shard (no column {missing[0]!r})")
        if frame_shape is not None:  # a dataset's clips share one --size: its first shard's say it
            first, where = found.paths(split)[0], found.uris(split)[0]
            if {"height", "width"} <= columns[first]:
                sizes = _read_shard(found.location, first, ["height", "width"]).to_pylist()
                if small := [r for r in sizes if r["height"] < frame_shape[0] or r["width"] < frame_shape[1]]:
                    print(f"note: {flag} {path}: clips of {small[0]['width']}×{small[0]['height']} below the config's "
                          f"frame_shape {frame_shape[1]}×{frame_shape[0]}: each frame is upsampled to it (preprocess "
                          f"with --size {max(frame_shape[:2])}, or use a config of the clips' size)")
    except (OSError, ValueError, KeyError, pa.ArrowException) as err:
        raise UserError(f"{flag} {where}: not readable as {SHARDS_EXPECTED} ({str(err).splitlines()[0]})") from None
    return found
