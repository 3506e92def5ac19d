"""Storage paths, local or s3://: one place that turns a path string into a filesystem (pyarrow.fs / fsspec)."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

ENDPOINT_ENV = ("FOMM_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
# attempts per S3 request (first try included) for transient errors: 5xx, throttling, dropped connections,
# retried with exponential backoff and jitter by the SDKs' own "standard" retry strategies
S3_MAX_ATTEMPTS_ENV = "FOMM_S3_MAX_ATTEMPTS"
S3_MAX_ATTEMPTS = 10


class StorageError(OSError):
    """A storage path that cannot be read or written; the message names the path."""


def is_remote(path: str | os.PathLike) -> bool:
    return str(path).startswith(("s3://", "s3a://"))


def s3_endpoint(endpoint: str | None = None) -> str | None:
    """The S3 endpoint URL: the argument, else FOMM_S3_ENDPOINT / AWS_ENDPOINT_URL(_S3), else AWS's default."""
    if endpoint:
        return endpoint
    return next((os.environ[k] for k in ENDPOINT_ENV if os.environ.get(k)), None)


def s3_max_attempts() -> int:
    """Attempts per S3 request: FOMM_S3_MAX_ATTEMPTS, else 10 (the SDKs' default of 3 gives up within a second)."""
    value = os.environ.get(S3_MAX_ATTEMPTS_ENV, "").strip()
    if not value:
        return S3_MAX_ATTEMPTS
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{S3_MAX_ATTEMPTS_ENV}={value!r}: expected a whole number of attempts ≥ 1")
    return int(value)


class RetryingS3FileSystem(pafs.S3FileSystem):
    """pyarrow's S3 filesystem that keeps its retry strategy when pickled: pyarrow's own pickling drops it, so a
    Ray worker (checkpoint uploads, Ray Data reads) would fall back to 3 attempts."""

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - pyarrow.fs.S3FileSystem's keywords
        super().__init__(**kwargs)
        self._kwargs = kwargs

    def __reduce__(self) -> tuple:
        return _rebuild_s3, (self._kwargs,)


def _rebuild_s3(kwargs: dict) -> RetryingS3FileSystem:
    return RetryingS3FileSystem(**kwargs)


def _s3_filesystem(endpoint: str | None) -> pafs.S3FileSystem:
    kwargs: dict = {"region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                    "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=s3_max_attempts())}
    # explicit credentials travel with the (pickled) filesystem to Ray workers whose environment lacks them
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        kwargs.update(access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"])
        if os.environ.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    endpoint = s3_endpoint(endpoint)
    if endpoint:
        url = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=url.netloc, scheme=url.scheme)
    return RetryingS3FileSystem(**kwargs)


def resolve(path: str | os.PathLike, endpoint: str | None = None) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path or an s3://bucket/key URI."""
    s = str(path)
    if is_remote(s):
        url = urlparse(s)
        return _s3_filesystem(endpoint), f"{url.netloc}{url.path}".rstrip("/")
    if s.startswith("file://"):
        s = s[len("file://"):]
    return pafs.LocalFileSystem(), str(Path(s).expanduser().absolute())


def fsspec_filesystem(path: str | os.PathLike, endpoint: str | None = None):  # noqa: ANN201 - fsspec type
    """An fsspec filesystem (s3fs for s3://, local otherwise) with listing caches off, so writes show at once."""
    if is_remote(path):
        import s3fs

        endpoint = s3_endpoint(endpoint)
        return s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint} if endpoint else {},
                                 config_kwargs={"retries": {"max_attempts": s3_max_attempts(), "mode": "standard"}},
                                 skip_instance_cache=True, use_listings_cache=False)
    import fsspec

    return fsspec.filesystem("file")


def join(base: str, *parts: str) -> str:
    """Join path parts with '/', for local paths and URIs alike."""
    out = str(base).rstrip("/")
    for p in parts:
        out = f"{out}/{str(p).strip('/')}"
    return out


def exists(path: str, endpoint: str | None = None) -> bool:
    fs, p = resolve(path, endpoint)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def is_dir(path: str, endpoint: str | None = None) -> bool:
    fs, p = resolve(path, endpoint)
    return fs.get_file_info(p).type == pafs.FileType.Directory


def makedirs(path: str, endpoint: str | None = None) -> None:
    fs, p = resolve(path, endpoint)
    fs.create_dir(p, recursive=True)


def read_bytes(path: str, endpoint: str | None = None) -> bytes:
    fs, p = resolve(path, endpoint)
    try:
        with fs.open_input_stream(p) as f:
            return f.read()
    except (FileNotFoundError, OSError) as e:
        raise StorageError(f"{path}: cannot read ({e})") from e


def write_bytes(path: str, data: bytes, endpoint: str | None = None, fs: pafs.FileSystem | None = None) -> None:
    """Write a whole file atomically: a temporary name then a rename locally; one PUT on S3 (atomic there)."""
    if fs is None:
        fs, p = resolve(path, endpoint)
    else:
        p = path
    if isinstance(fs, pafs.LocalFileSystem):
        target = Path(p)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return
    with fs.open_output_stream(p) as f:
        f.write(data)


def open_file(path: str, mode: str = "rb", endpoint: str | None = None):  # noqa: ANN201 - a binary file object
    """A binary file object for reading ('rb') or writing ('wb'; use write_bytes for atomic writes)."""
    fs, p = resolve(path, endpoint)
    if mode == "rb":
        return fs.open_input_file(p)
    if mode == "wb":
        return fs.open_output_stream(p)
    raise ValueError(f"{path}: unsupported mode {mode!r} (use 'rb' or 'wb')")


def delete(path: str, endpoint: str | None = None) -> None:
    fs, p = resolve(path, endpoint)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(p)
    elif info.type == pafs.FileType.File:
        fs.delete_file(p)


def _unresolve(original: str, fs_path: str) -> str:
    return f"s3://{fs_path}" if is_remote(original) else fs_path


def list_files(root: str, pattern: str = "*", recursive: bool = True, endpoint: str | None = None) -> list[str]:
    """Files under root whose name matches a glob pattern, sorted; URIs stay URIs."""
    fs, p = resolve(root, endpoint)
    if fs.get_file_info(p).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=recursive))
    names = [i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatch(i.base_name, pattern)]
    return sorted(_unresolve(str(root), n) for n in names)


def glob(pattern: str, endpoint: str | None = None) -> list[str]:
    """Files matching a glob such as 'videos/*.mp4' or 's3://bucket/raw/**/*.mkv' (** spans folders)."""
    s = str(pattern)
    head = []
    for part in s.split("/"):
        if any(c in part for c in "*?["):
            break
        head.append(part)
    root = "/".join(head) or "."
    fs, p = resolve(root, endpoint)
    if fs.get_file_info(p).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=True))
    full_pattern = resolve(s, endpoint)[1] if not is_remote(s) else s[len("s3://"):]
    regex = _glob_regex(full_pattern)
    out = [i.path for i in infos if i.type == pafs.FileType.File and regex.fullmatch(i.path)]
    return sorted(_unresolve(s, n) for n in out)


def _glob_regex(pattern: str) -> re.Pattern:
    """Shell-glob semantics on '/' paths: * and ? stay inside one folder, **/ spans any number of folders."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append(fnmatch.translate(pattern[i:j + 1])[4:-3])  # the class only
                i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


@contextlib.contextmanager
def local_copy(path: str, endpoint: str | None = None, fs: pafs.FileSystem | None = None) -> Iterator[str]:
    """A local file path for `path`: the path itself when local, else a temporary download removed afterwards."""
    if fs is None and not is_remote(path):
        yield str(path)
        return
    if fs is None:
        fs, p = resolve(path, endpoint)
    else:
        p = path
    if isinstance(fs, pafs.LocalFileSystem):
        yield p
        return
    suffix = Path(p).suffix
    with tempfile.TemporaryDirectory(prefix="fomm-dl-") as d:
        local = os.path.join(d, f"input{suffix}")
        try:
            with fs.open_input_stream(p) as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
        except OSError as e:
            raise StorageError(f"s3://{p}: cannot download ({e})") from e
        yield local


def check_reachable(flag: str, path: str, endpoint: str | None = None) -> None:
    """Before a job starts: an s3:// path's endpoint accepts connections (a UserError naming the flag if not)."""
    from services.checks import reachable

    if is_remote(path) and (url := s3_endpoint(endpoint)):
        reachable(f"{flag} {path}: S3 endpoint", url)
