"""Cheap input checks run before any job starts: each raises a UserError naming the flag and what was expected."""

from __future__ import annotations

import contextlib
import csv
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


def csv_key(written: str) -> str:
    """A CSV header name as the product reads it: ' Video_ID' is video_id."""
    return written.strip().lower()


def csv_table(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    """A user's CSV as spreadsheets save it (a BOM; ',', ';' or a tab between the fields, the one its header holds
    most of; capitals or spaces in the header): its header names as written, and its rows keyed by csv_key.
    UnicodeDecodeError: not text; ValueError: not a CSV."""
    lines = data.decode("utf-8-sig").splitlines()
    reader = csv.DictReader(lines, delimiter=max(",;\t", key=lines[0].count) if lines else ",")
    try:
        written = list(reader.fieldnames or [])
        reader.fieldnames = [csv_key(name) for name in written]
        return written, list(reader)
    except csv.Error as err:  # a field over 128 KB (no path is): a traceback before
        raise ValueError(f"not a CSV of paths and values (line {reader.line_num}: {err})") from None


def ragged_row(row: dict) -> int | None:
    """The header's field count when a csv.DictReader row has a field more or fewer (DictReader keeps extras under
    the key None and fills missing fields with None), else None."""
    return len(row) - (None in row) if None in row or None in row.values() else None


def writable_dir(flag: str, path: str | os.PathLike) -> None:
    """A local folder that can be created (if missing) and written, on a disk with room; nothing is created."""
    if "://" in str(path):  # Path() would take 's3://b/x' for the local folder 's3:/b/x'
        raise UserError(f"{flag} {path}: expected a local path (this command writes local files)")
    p = Path(path)
    existing = next((a for a in (p, *p.parents) if a.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder")
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: cannot write under {existing or p.anchor}")
    free_space(flag, path, existing)
    if p.exists():
        try:
            tempfile.TemporaryFile(dir=p).close()
        except OSError as err:
            raise UserError(f"{flag} {path}: cannot write ({err.strerror or err})") from None


def writable_file(flag: str, path: str | os.PathLike) -> None:
    """A local output file whose folder can be created and written (see writable_dir)."""
    writable_dir(flag, path if "://" in str(path) else Path(path).parent)


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


MLFLOW_PROBE = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"


def mlflow_answers(flag: str, uri: str, timeout: float = 3.0) -> None:
    """An http(s) URI that answers as an MLflow server (a proxy would make MLflow retry for minutes); one too busy to
    answer within `timeout` passes (it accepted the connection; MLflow's client waits for it)."""
    import requests

    token, user = os.environ.get("MLFLOW_TRACKING_TOKEN"), os.environ.get("MLFLOW_TRACKING_USERNAME")
    auth = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")) if user and not token else None
    try:
        answer = requests.get(uri.rstrip("/") + MLFLOW_PROBE, auth=auth, timeout=timeout,
                              headers={"Authorization": f"Bearer {token}"} if token else {})
    except requests.Timeout:
        return  # accepted the connection but busy: MLflow's client waits and retries as it should
    except (requests.RequestException, ValueError) as err:  # a refused or reset connection, a TLS failure
        raise UserError(f"{flag} {uri}: the tracking server did not answer ({err})") from None
    if answer.ok:
        return
    if answer.status_code in (401, 403):
        raise UserError(f"{flag} {uri}: the tracking server refused access (HTTP {answer.status_code}; set "
                        "MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)")
    with contextlib.suppress(ValueError):
        if "error_code" in answer.json():
            return  # MLflow's own answer (e.g. RESOURCE_DOES_NOT_EXIST): it is a tracking server
    raise UserError(f"{flag} {uri}: not an MLflow tracking server (HTTP {answer.status_code} from "
                    f"{MLFLOW_PROBE.split('?')[0]})")


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


def tracking_uri(flag: str, uri: str | None, write: bool = True, experiment: str | None = None) -> None:
    """An MLflow tracking URI that can work: a reachable http(s) server, or a sqlite/file store whose folder exists
    (None: $MLFLOW_TRACKING_URI, the default of every entry point, if set; else, for a command that `write`s,
    the ./mlruns store it will create). A server's `experiment` whose artifacts go to S3 needs credentials here."""
    from services.tracking.run import end_wait_s

    end_wait_s()  # its environment variable, read where a run ends: refused before the work
    if not uri:
        flag, uri = "$MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI", "").strip()
        if not uri:
            if write:
                from services.tracking.store import default_tracking_uri

                sqlite_store("--tracking-uri (the default)", default_tracking_uri(), create=True)
            return
    if uri.split("://")[0] in DATABRICKS:  # a Databricks workspace: MLflow signs in with its own settings
        from services.tracking.store import databricks_problem

        if problem := databricks_problem(uri):
            raise UserError(f"{flag} {uri}: {problem} (set DATABRICKS_HOST and DATABRICKS_TOKEN, or a profile "
                            "in ~/.databrickscfg)")
        return
    if (meant := server_meant(uri)) and not Path(uri).is_dir():  # not a folder store named 127.0.0.1:5000
        raise UserError(f"{flag} {uri}: a server's address without its scheme (meant {meant}?)")
    parsed = parsed_url(flag, uri)
    scheme = parsed.scheme
    if scheme in ("http", "https"):
        reachable(flag, uri)
        mlflow_answers(flag, uri)
        if write and experiment:
            s3_artifacts(flag, uri, experiment)
    elif scheme == "sqlite":
        sqlite_store(flag, uri, write=write)
    elif scheme in ("", "file"):
        local = Path(parsed.path if scheme else uri)
        if local.exists() and not local.is_dir():
            raise UserError(f"{flag} {uri}: is a file (expected a folder for a file store)")
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("true", "1"):  # MLflow's opt-out
            raise UserError(f"{flag} {uri}: a folder store, which MLflow 3 refuses (use sqlite:///"
                            f"{local.resolve() / 'mlflow.db'}, or set MLFLOW_ALLOW_FILE_STORE=true)")
    elif scheme.split("+")[0] in SQL_STORES:  # postgresql+psycopg2://… names its driver
        database_driver(flag, uri)
    else:
        raise UserError(f"{flag} {uri}: unknown tracking URI scheme {scheme!r} (expected http(s)://, sqlite:/// "
                        "or a folder)")


def s3_artifacts(flag: str, uri: str, experiment: str) -> None:
    """An existing experiment of server `uri` whose artifacts are on S3 (a server started with an s3:// artifact root,
    without --serve-artifacts: each client uploads them) finds S3 credentials on this machine. Without them a run
    failed at its first artifact, after Ray had started. A new experiment's root is the server's to choose."""
    from services.failures import s3_credentials_problem
    from services.tracking.store import make_client

    try:
        found = make_client(uri).get_experiment_by_name(experiment)
    except Exception:  # noqa: BLE001 - the run's own calls meet it again, with the store's retries and messages
        return
    root = found.artifact_location if found is not None else ""
    if not root.startswith("s3://"):
        return
    if problem := s3_credentials_problem():
        raise UserError(f"{flag} {uri}: experiment {experiment!r} keeps its artifacts at {root}, uploaded from this "
                        f"machine: {problem}")


def registered_checkpoint(flag: str, value: str | None, uri: str | None = None) -> str | None:
    """`value` as it is, unless it names a registered model version (models:/NAME/VERSION, /latest or @ALIAS): then
    its checkpoint file, copied to this machine (services.tracking.registry) from the tracking store `uri` (None:
    $MLFLOW_TRACKING_URI, else ./mlruns), checked first."""
    if value is None or not value.startswith("models:"):
        return value
    tracking_uri("--tracking-uri", uri, write=False)  # a server that answers, a store that opens; then MLflow
    from services.tracking.registry import NotCopied
    from services.tracking.registry import registered_checkpoint as fetch
    from services.tracking.store import default_tracking_uri, local_sqlite_path

    store = uri or default_tracking_uri()
    if (db := local_sqlite_path(store)) is not None and not db.is_file():  # opening it would make an empty one
        raise UserError(f"{flag} {value}: no MLflow store at {store} (name the store train --model-name registered "
                        "it in: $MLFLOW_TRACKING_URI or --tracking-uri)")
    try:
        return fetch(flag, value, store)
    except NotCopied as err:  # MLflow's download error keeps no cause: files on S3 are asked for as a job asks
        if err.source.startswith("s3://"):  # (no credentials, keys refused, no bucket); MLflow's S3 endpoint
            storage_reachable(f"{flag} {value}: its files at", err.source, os.environ.get("MLFLOW_S3_ENDPOINT_URL"))
        raise


def registered_config(config: str | None, checkpoint: str | None, given: str | None) -> str:
    """--config as given, else the config registered with a models:/ checkpoint (`train --model-name` keeps it
    beside the file `registered_checkpoint` copied here: `checkpoint`, from the URI `given`); a UserError otherwise."""
    if config is not None:
        return config
    registered = Path(checkpoint).with_name("config.yaml") if checkpoint and checkpoint != given else None
    if registered is None or not registered.is_file():
        raise UserError("--config is required (a models:/ --checkpoint brings the config registered with it)")
    return str(registered)


DATABRICKS = ("databricks", "databricks-uc", "uc")  # MLflow's names for a workspace (databricks://PROFILE too)
SQL_STORES = ("postgresql", "mysql", "mssql")  # the databases MLflow keeps runs in besides SQLite


def database_driver(flag: str, uri: str) -> None:
    """A database store's Python driver is installed: MLflow imported it at its first call (a traceback, after
    Ray had started). SQLAlchemy names the driver the URL's dialect takes."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(uri).get_dialect().import_dbapi()
    except ImportError as err:
        raise UserError(f"{flag} {uri}: its database driver ({err.name or err}) is not installed: install it, or "
                        "log to an MLflow server (http://HOST:5000) that keeps its runs in that database") from None
    except (ArgumentError, NoSuchModuleError) as err:
        raise UserError(f"{flag} {uri}: not a database URL ({str(err).splitlines()[0]})") from None


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database file


def sqlite_store(flag: str, uri: str, write: bool = True, create: bool = False) -> None:
    """A SQLite tracking store MLflow can open and, to `write`, write (with `create`, its folder may be missing):
    MLflow retried a file it could not open for 100 s, 40 warning lines, then a traceback."""
    if not uri.startswith("sqlite:///") and uri != "sqlite://":  # sqlite://x.db: SQLAlchemy takes x.db for a host
        raise UserError(f"{flag} {uri}: expected sqlite:///PATH/mlflow.db (three slashes, then the path; four for "
                        "an absolute one)")
    db = Path(uri.removeprefix("sqlite:///"))
    if str(db) in ("", ".", ":memory:"):
        return
    if not create and not db.parent.is_dir():
        raise UserError(f"{flag} {uri}: folder {db.parent} does not exist (expected sqlite:///PATH/mlflow.db)")
    if db.is_dir():
        raise UserError(f"{flag} {uri}: {db} is a folder (expected sqlite:///PATH/mlflow.db)")
    if db.exists():
        try:
            with open(db, "rb+" if write else "rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as err:
            raise UserError(f"{flag} {uri}: cannot {'write' if write else 'read'} {db} ({err.strerror or err})"
                            ) from None
        if head and head != SQLITE_HEADER:
            raise UserError(f"{flag} {uri}: {db} is not a SQLite database (expected MLflow's store, or a new file)")
        if head and (others := _tables_not_mlflows(flag, uri, db)):
            raise UserError(f"{flag} {uri}: {db} is another application's SQLite database (tables "
                            f"{', '.join(others[:3])}{', …' if len(others) > 3 else ''}), not an MLflow store: MLflow "
                            "would add its own tables to it (give a new file, e.g. sqlite:///mlflow.db)")
    if write:  # SQLite writes its journal beside the file
        writable_dir(f"{flag} {uri}: folder", db.parent)


# the tables MLflow makes first in a new store (experiments) and last (alembic_version): a store another process is
# making now has one of them already
MLFLOW_TABLES = {"alembic_version", "experiments"}


def _tables_not_mlflows(flag: str, uri: str, db: Path) -> list[str]:
    """The tables of SQLite file `db` when it is not an MLflow store (MLflow made its own ~50 beside them); [] for
    MLflow's store, an empty database or one locked by its writer. Read only; a damaged file is a UserError."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            tables = {row[0] for row in con.execute("select name from sqlite_master where type = 'table'")}
    except sqlite3.DatabaseError as err:
        if "locked" in str(err):  # a server or run writing it now: MLflow's to wait on
            return []
        raise UserError(f"{flag} {uri}: {db} is a damaged SQLite database ({err})") from None
    return [] if not tables or tables & MLFLOW_TABLES else sorted(tables)


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
