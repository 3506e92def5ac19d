"""Storage, local or s3://, on fsspec: one filesystem per process; Ray tasks get a `Location`, never keys."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import fsspec

from services.atomic import atomic_path, scratch_dir
from services.cli import UserError, user_path
from services.failures import environment_failure
from services.fields import Rule, env_number

ENDPOINT_ENV = ("FOMM_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
# attempts per S3 request (first try included) for transient errors: 5xx, throttling, dropped connections,
# retried with exponential backoff and jitter by botocore's own "standard" retry mode
S3_MAX_ATTEMPTS_ENV = "FOMM_S3_MAX_ATTEMPTS"
S3_MAX_ATTEMPTS = 10
# schemes a path may misspell with a slash short ("s3:/bucket/ds" was a local folder 's3:', written with exit 0)
URL_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "hdfs", "http", "https")


class StorageError(UserError, OSError):
    """A storage path that cannot be read or written; the message names the path."""


def _reason(err: OSError) -> str:
    """Why a read failed: S3's refusal of the keys, said as such (s3fs's message is a bare "Forbidden")."""
    return (environment_failure(err) if err.errno is None else None) or str(err)


def is_remote(path: str | os.PathLike) -> bool:
    return str(path).startswith(("s3://", "s3a://"))


def s3_endpoint(endpoint: str | None = None) -> str | None:
    """The S3 endpoint URL: the argument, else FOMM_S3_ENDPOINT / AWS_ENDPOINT_URL(_S3), else AWS's default."""
    return endpoint or next((os.environ[k] for k in ENDPOINT_ENV if os.environ.get(k)), None)


def s3_max_attempts() -> int:
    """Retries of an S3 request after its first try (botocore's `max_attempts`): FOMM_S3_MAX_ATTEMPTS, else 10
    (botocore's default of 3 tries gives up within a second)."""
    return int(env_number(S3_MAX_ATTEMPTS_ENV, S3_MAX_ATTEMPTS, int, Rule(ge=1)))


def url_problem(path: str | os.PathLike) -> str | None:
    """Why `path` names no storage of ours (None: a local path, file:// or s3://BUCKET/…): another scheme, or a URL
    short of a slash, would be taken for a local folder named like 'gs:'; a NUL byte is in no file's name."""
    s = str(path)
    if "\x00" in s:
        return "a NUL byte (\\x00) in the name: no file can have that name"
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", s)
    if scheme and not is_remote(s) and scheme[0] != "file://":
        return f"unsupported storage {scheme[0]} (expected a local path or s3://BUCKET/…)"
    if is_remote(s) and not s.split("://", 1)[1].split("/", 1)[0]:
        return "no bucket (expected s3://BUCKET/…)"
    if (short := re.match(r"([A-Za-z][A-Za-z0-9+.-]*):/?(?!/)", s)) and short[1].lower() in URL_SCHEMES:
        return f"a slash is missing after '{short[1]}:' (expected a local path or s3://BUCKET/…)"
    return None


def resolve(path: str | os.PathLike, endpoint: str | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(fsspec filesystem, path inside it) for a local path or an s3://bucket/key URI."""
    s = str(path)
    if problem := url_problem(s):
        raise StorageError(f"{s}: {problem}")
    if is_remote(s):
        from services.s3 import s3_filesystem  # s3fs: only for s3:// paths

        return s3_filesystem(s3_endpoint(endpoint), s3_max_attempts()), s.split("://", 1)[1].rstrip("/")
    return fsspec.core.url_to_fs(str(Path(user_path(s)).absolute()))


def arrow_filesystem(fs: fsspec.AbstractFileSystem):  # noqa: ANN201 - a pyarrow.fs.FileSystem
    """The pyarrow view of a filesystem, for APIs that take only pyarrow's (Ray Train's storage_filesystem)."""
    import pyarrow.fs as pafs

    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        return pafs.LocalFileSystem()
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


@dataclass(frozen=True)
class Location:
    """A storage root as sent to Ray tasks: its URL and S3 endpoint (no credentials), resolved where it is used."""

    url: str
    endpoint: str | None = None

    def __post_init__(self) -> None:  # the endpoint this process resolved travels with the URL
        object.__setattr__(self, "endpoint", s3_endpoint(self.endpoint) if is_remote(self.url) else self.endpoint)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return resolve(self.url, self.endpoint)[0]

    def path(self, *parts: str) -> str:
        """A path inside the filesystem (no scheme)."""
        return "/".join([resolve(self.url, self.endpoint)[1], *parts])

    def uri(self, *parts: str) -> str:
        return join(self.url, *parts)

    def uri_of(self, path: str) -> str:
        """The URL (s3:// kept) or local path of `path`, a path inside the filesystem at or under this root."""
        root = self.path()
        return self.uri(path[len(root):]) if path != root else self.url


def join(base: str, *parts: str) -> str:
    """Join path parts with '/', for local paths and URIs alike."""
    return "/".join([str(base).rstrip("/"), *(str(p).strip("/") for p in parts)])


def safe_name(text: str) -> str:
    """`text` (an id with '#', '/' or ':') as one file name: characters other than letters, digits, '.', '_' and '-'
    as '_'."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def exists(path: str, endpoint: str | None = None) -> bool:
    fs, p = resolve(path, endpoint)
    return fs.exists(p)


def is_dir(path: str, endpoint: str | None = None) -> bool:
    fs, p = resolve(path, endpoint)
    return fs.isdir(p)


def modified(path: str, endpoint: str | None = None) -> float:
    """When a file was last written, in seconds since the epoch."""
    fs, p = resolve(path, endpoint)
    return fs.modified(p).timestamp()


def read_bytes(path: str, endpoint: str | None = None) -> bytes:
    fs, p = resolve(path, endpoint)
    try:
        return fs.cat_file(p)
    except OSError as e:
        raise StorageError(f"{path}: cannot read ({_reason(e)})") from e


def write_bytes(path: str, data: bytes, endpoint: str | None = None,
                fs: fsspec.AbstractFileSystem | None = None) -> None:
    """Write a whole file atomically: a rename locally (services.atomic), one PUT on S3 (with `fs`: a path in it)."""
    if fs is None:
        fs, path = resolve(path, endpoint)
    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return
    fs.pipe_file(path, data)


def _listed(original: str, fs_paths: Iterable[str]) -> list[str]:
    """Sorted, dot names (temporaries of atomic writes, hidden files) left out as a shell glob would; URIs stay URIs."""
    visible = (p for p in fs_paths if not PurePosixPath(p).name.startswith("."))
    return sorted(f"s3://{p}" if is_remote(original) else p for p in visible)


def list_files(root: str, pattern: str = "*", endpoint: str | None = None) -> list[str]:
    """Files anywhere under root whose name matches a glob pattern (dot names left out), sorted; URIs stay URIs."""
    fs, p = resolve(root, endpoint)
    return _listed(root, (f for f in fs.find(p) if PurePosixPath(f).match(pattern)))


def glob(pattern: str, endpoint: str | None = None) -> list[str]:
    """Files (dot names left out) matching a glob such as 's3://bucket/raw/**/*.mkv' (** spans folders), sorted."""
    fs, p = resolve(pattern, endpoint)
    return _listed(pattern, (n for n, info in fs.glob(p, detail=True).items() if info["type"] == "file"))


@contextlib.contextmanager
def local_copy(path: str, endpoint: str | None = None) -> Iterator[str]:
    """A local path for `path`: the path itself when local, else a temporary download (of a file, or of a folder's
    files) removed afterwards."""
    if not is_remote(path):
        yield str(path)
        return
    fs, p = resolve(path, endpoint)
    with scratch_dir("download") as d:
        local = os.path.join(d, f"input{PurePosixPath(p).suffix}")
        try:
            try:
                fs.get_file(p, local)
            except FileNotFoundError:  # a folder (of a video's frames): its files, asked for only then
                if not fs.isdir(p):
                    raise
                fs.get(f"{p.rstrip('/')}/", f"{local}/", recursive=True)
        except OSError as e:
            raise StorageError(f"{path}: cannot download ({_reason(e)})") from e
        yield local
