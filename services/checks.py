"""Cheap input checks run before any job starts: each raises a UserError naming the flag and what was expected."""

from __future__ import annotations

import errno
import os
import re
import socket
import tempfile
import urllib.parse
from pathlib import Path, PurePosixPath

from services.cli import UserError

NOT_REGULAR = "not a regular file (a device or pipe)"


def file_or_folder(flag: str, path: str | os.PathLike, what: str) -> None:
    """A local input that is a file or a folder, if it exists: a named pipe blocks whatever opens it (PyArrow, FFmpeg),
    and SIGTERM does not end the wait."""
    if os.path.exists(path) and not (os.path.isfile(path) or os.path.isdir(path)):
        raise UserError(f"{flag} {path}: {NOT_REGULAR} (expected {what})")


def existing_file(flag: str, path: str | os.PathLike, what: str = "a file", endpoint: str | None = None) -> None:
    """A file that exists and is not empty: local, or s3:// at `endpoint` (see storage_reachable)."""
    from services.storage import is_remote, resolve, url_problem

    if problem := url_problem(path):  # gs://…: no local file
        raise UserError(f"{flag} {path}: {problem}")
    if is_remote(path):
        storage_reachable(flag, str(path), endpoint)
    fs, p = resolve(path, endpoint)
    if not is_remote(path) and (why := dangling(p)):
        raise UserError(f"{flag} {path}: {why} (expected {what})")
    if not fs.exists(p):
        raise UserError(f"{flag} {path}: no such file (expected {what})")
    if not fs.isfile(p):  # a folder, or a device or pipe: /dev/null read as an empty config
        kind = "is a folder" if fs.isdir(p) else NOT_REGULAR
        raise UserError(f"{flag} {path}: {kind} (expected {what})")
    if fs.size(p) == 0:
        raise UserError(f"{flag} {path}: is empty (expected {what})")


MIN_FREE_BYTES = 16 * 2**20  # less than this free on an output's disk: refused before the work, not after it


def free_space(flag: str, path: str | os.PathLike, folder: str | os.PathLike) -> None:
    """The disk holding the existing `folder` (where `path` will be written) has room for an output."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return  # no answer (an odd file system): the write itself will tell
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE_BYTES:
        raise UserError(f"{flag} {path}: no space left on the device ({free // 1024} KiB free under {folder})")


def free_memory() -> int | None:
    """Bytes of memory this process can take now: Linux's MemAvailable, within its cgroup's limit (a container's,
    a Kubernetes pod's; cgroup v2 or v1) where one is set; None where neither is known."""
    def read(path: str) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None

    meminfo = read("/proc/meminfo") or ""
    free = next((int(line.split()[1]) * 1024 for line in meminfo.splitlines() if line.startswith("MemAvailable:")),
                None)
    limit = read("/sys/fs/cgroup/memory.max") or read("/sys/fs/cgroup/memory/memory.limit_in_bytes")  # v2, v1
    used = read("/sys/fs/cgroup/memory.current") or read("/sys/fs/cgroup/memory/memory.usage_in_bytes")
    if limit and used and limit.strip().isdigit():
        free = min(free or 1 << 62, max(0, int(limit) - int(used)))
    return free


def writable_dir(flag: str, path: str | os.PathLike, named: str | os.PathLike | None = None) -> None:
    """A local folder that can be created (if missing) and written, on a disk with room; nothing is created. The
    error names `named` (an output file in it), else the folder."""
    shown = f"{flag} {path if named is None else named}"
    if "://" in str(path):  # Path() would take 's3://b/x' for the local folder 's3:/b/x'
        raise UserError(f"{shown}: expected a local path (this command writes local files)")
    p = Path(path)
    existing = next((a for a in (p, *p.parents) if os.path.lexists(a)), None)
    if existing is not None and (why := dangling(existing)):  # mkdir would fail on it
        raise UserError(f"{shown}: {existing} is {why} (remove it, or choose another path)")
    if existing is not None and not existing.is_dir():
        raise UserError(f"{shown}: {existing} is {'a file' if existing.is_file() else 'a device or pipe'}, not a folder")
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{shown}: cannot write under {existing or p.anchor}")
    free_space(flag, path if named is None else named, existing)
    if p.exists():
        try:
            tempfile.TemporaryFile(dir=p).close()
        except OSError as err:
            raise UserError(f"{shown}: cannot write ({err.strerror or err})") from None


def dangling(path: str | os.PathLike) -> str | None:
    """What `path` is where it is a symlink to nothing (or a loop of them), for a one-line error; else None."""
    if not os.path.islink(path) or os.path.exists(path):
        return None
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a loop of symlinks"
    return f"a symlink to {os.readlink(path)}, which does not exist"


def no_dangling_output(flag: str, path: str | os.PathLike) -> None:
    """An output path that is no symlink to nothing: writing through it failed (a rename, mkdir) after the work."""
    if why := dangling(path):
        raise UserError(f"{flag} {path}: {why} (remove it, or choose another path)")


def new_file(flag: str, path: str | os.PathLike) -> None:
    """An output file that does not exist yet (nor a symlink to nothing there): a file is never overwritten."""
    no_dangling_output(flag, path)
    if Path(path).exists():
        raise UserError(f"{flag} {path}: exists (a file is never overwritten: remove it or choose a new name)")


NAME_MAX = 255  # bytes in a file name on Linux's file systems


def name_fits(flag: str, path: str | os.PathLike) -> None:
    """A local output's name leaves room for its temporary's (services.atomic: `.NAME.XXXXXXXX.tmpSUFFIX`)."""
    name = os.fsencode(Path(path).name)
    longest = NAME_MAX - 14 - len(os.path.splitext(name)[1])
    if len(name) > longest:
        raise UserError(f"{flag} {path}: file name too long ({len(name)} bytes; at most {longest}: it is written "
                        f"first under a temporary name {NAME_MAX - longest} bytes longer)")


def writable_file(flag: str, path: str | os.PathLike) -> None:
    """A local output file whose name fits (name_fits) and whose folder can be created and written (writable_dir)."""
    if "://" in str(path):
        writable_dir(flag, path)  # refused: a local path is expected
    name_fits(flag, path)
    writable_dir(flag, Path(path).parent, named=path)


def writable_storage(flag: str, path: str, endpoint: str | None = None) -> None:
    """Where a job will write: an s3:// path in a bucket that answers (see storage_reachable), or a local folder
    that can be written."""
    from services.storage import is_remote

    storage_reachable(flag, path, endpoint)  # nothing to check for a local path
    if not is_remote(path):
        writable_dir(flag, path.removeprefix("file://"))


def parsed_url(flag: str, url: str) -> urllib.parse.ParseResult:
    """`url` split into its parts, its port read; a UserError naming the flag where it cannot be (a port that is
    no number or above 65535, an unclosed IPv6 bracket)."""
    try:
        parsed = urllib.parse.urlparse(url)
        parsed.port  # noqa: B018 - read for its check
    except ValueError as err:
        raise UserError(f"{flag} {url}: not a valid URL ({err})") from None
    return parsed


SERVER_WITHOUT_SCHEME = re.compile(r"(?:(https?)(?://|:(?!/)))?([A-Za-z0-9.-]+:\d+(?:/.*)?)")  # HOST:PORT[/…]


def server_meant(address: str) -> str | None:
    """The http(s) URL meant by a server's address typed without its scheme or with part of it (127.0.0.1:5000,
    http//host:5000, http:host:5000); None for anything else."""
    if found := SERVER_WITHOUT_SCHEME.fullmatch(address):
        return f"{found[1] or 'http'}://{found[2]}"
    return None


def reachable(flag: str, url: str, timeout: float = 3.0) -> None:
    """An http(s) endpoint whose host accepts a TCP connection; `flag` starts the message (flag, or flag + what)."""
    parsed = parsed_url(flag, url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        meant = server_meant(url)
        raise UserError(f"{flag} {url}: expected an http(s):// URL" + (f" (meant {meant}?)" if meant else ""))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as err:
        raise UserError(f"{flag} {url}: unreachable ({err.strerror or err})") from None


S3_ANSWER_S = 20.0  # the input checks' S3 request: answered within this, or the endpoint is refused


def storage_reachable(flag: str, path: str, endpoint: str | None = None) -> None:
    """An s3:// path's endpoint accepts connections, credentials exist and its bucket exists and lets them list it
    (jobs never create buckets); else an error naming the flag."""
    from services.failures import CREDENTIALS_HINT, environment_failure, first_line, s3_credentials_problem
    from services.storage import StorageError, is_remote, resolve, s3_endpoint, url_problem

    if problem := url_problem(path):
        raise StorageError(f"{flag} {path}: {problem}")
    if not is_remote(path):
        return
    if url := s3_endpoint(endpoint):
        reachable(f"{flag} {path}: S3 endpoint", url)
    import botocore.exceptions

    from services.s3 import s3_filesystem

    if problem := s3_credentials_problem():  # AWS settings no request passes, sign-ins that fail
        raise StorageError(f"{flag} {path}: {problem}")
    try:  # a malformed region, an endpoint that does not answer
        fs, inside = resolve(path, endpoint)
        probe = s3_filesystem(s3_endpoint(endpoint), 0, S3_ANSWER_S)  # one try: a port that never answers: seconds
        probe.connect()
    except botocore.exceptions.BotoCoreError as err:
        raise StorageError(f"{flag} {path}: {environment_failure(err) or f'S3: {first_line(err)}'}") from None
    bucket = inside.split("/", 1)[0]
    try:  # one key at most: its error names the refusal (a HEAD's says only "Forbidden")
        try:
            probe.call_s3("list_objects_v2", Bucket=bucket, MaxKeys=1)
        except (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError):
            raise StorageError(f"{flag} {path}: S3 endpoint {s3_endpoint(endpoint) or 'of AWS'}: no answer within "
                               f"{S3_ANSWER_S:g} s (is it an S3 endpoint, at the right port?)") from None
        except (FileNotFoundError, PermissionError):
            raise
        except OSError:  # it answered, busy (503 SlowDown, …): asked again as the job asks, with its retries
            fs.call_s3("list_objects_v2", Bucket=bucket, MaxKeys=1)
    except FileNotFoundError:
        raise StorageError(f"{flag} {path}: no bucket {bucket!r} there (create it first, or check its name)") from None
    except PermissionError as err:  # wrong or expired keys, or no permission to list the bucket
        raise StorageError(f"{flag} {path}: S3 refused access ({str(err).rstrip('.')}; check the credentials: "
                           f"{CREDENTIALS_HINT}, and the bucket's permissions)") from None


def not_an_input(flag: str, out: str | os.PathLike | None, inputs: dict[str, str | os.PathLike | None],
                 folder: bool = False) -> None:
    """An output that neither is nor sits inside any of `inputs` ({flag: path}), symlinks followed (URLs as written);
    with `folder` (an output folder the run fills), no input may sit inside it either."""
    if out is None:
        return
    scheme, target = _resolved(out)
    for name, path in inputs.items():
        if path is None or str(path) in ("", "-"):
            continue
        source_scheme, source = _resolved(path)
        if source_scheme != scheme:
            continue
        if target == source:
            raise UserError(f"{flag} {out}: is the input {name} {path} (an output must not overwrite an input)")
        if source in target.parents:
            raise UserError(f"{flag} {out}: is inside the input {name} {path} (outputs go outside the inputs)")
        if folder and target in source.parents:
            raise UserError(f"{flag} {out}: holds the input {name} {path} (an output folder is the run's own: "
                            "choose a new or empty one)")


def same_place(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file or folder: local ones with symlinks followed, URLs as written."""
    return _resolved(a) == _resolved(b)


def _resolved(path: str | os.PathLike) -> tuple[str, PurePosixPath]:
    """(scheme, path): a local path made absolute with symlinks followed; a URL's bucket and key as written."""
    scheme, sep, rest = str(path).partition("://")
    if sep:
        return scheme, PurePosixPath("/" + rest.rstrip("/"))
    return "", PurePosixPath(Path(path).expanduser().resolve())


def device(flag: str, text: str, here: bool = True) -> str:
    """A torch device name: cpu, cuda, cuda:N or mps; with `here`, one this machine has (else on the workers)."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", text):
        raise UserError(f"{flag} {text!r}: not a device (use cpu, cuda, cuda:N or mps)")
    if here and text != "cpu":
        import torch

        if text == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"{flag} mps: Apple's Metal (MPS) is not available on this machine")
        have = torch.cuda.device_count() if text.startswith("cuda") else 1
        if int(text.partition(":")[2] or 0) >= have:
            raise UserError(f"{flag} {text}: CUDA is not available on this machine" if have == 0 else
                            f"{flag} {text}: this machine has {have} CUDA device{'s' * (have != 1)}")
    return text


def own_folder(flag: str, path: str | os.PathLike, names: set[str], stage: str) -> None:
    """A local output folder that is new, empty or an earlier run's (it holds one of the stage's `names`): files of
    the user's would be mixed with the stage's, and any of the same names replaced."""
    if Path(path).is_dir() and (held := {p.name for p in Path(path).iterdir()}) and not held & names:
        raise UserError(f"{flag} {path}: a folder of other files, not an earlier {stage}'s (it holds {sorted(held)[0]}"
                        f"{', …' if len(held) > 1 else ''}): the {stage} writes a folder of its own; choose a new or "
                        "empty one")
