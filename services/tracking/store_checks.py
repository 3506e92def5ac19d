"""Checks of an MLflow tracking store and of its model registry, run before any job starts: each raises a UserError
naming the flag and what was expected."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from services.checks import S3_ANSWER_S, parsed_url, reachable, server_meant, storage_reachable, writable_dir
from services.cli import UserError

MLFLOW_PROBE = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"


def mlflow_answers(flag: str, uri: str, timeout: float = S3_ANSWER_S) -> None:
    """An http(s) URI that answers as an MLflow server within `timeout` (a proxy, or a server that accepts and never
    answers, made MLflow retry for a minute and end in a line naming no flag)."""
    import requests

    token, user = os.environ.get("MLFLOW_TRACKING_TOKEN"), os.environ.get("MLFLOW_TRACKING_USERNAME")
    auth = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")) if user and not token else None
    try:
        answer = requests.get(uri.rstrip("/") + MLFLOW_PROBE, auth=auth, timeout=timeout,
                              headers={"Authorization": f"Bearer {token}"} if token else {})
    except requests.Timeout:  # MLflow's own requests give up after as long
        raise UserError(f"{flag} {uri}: the tracking server took the connection but gave no answer within "
                        f"{timeout:g} s") from None
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


def registered_checkpoint(flag: str, value: str | None, uri: str | None = None,
                          uri_flag: str | None = "--tracking-uri") -> str | None:
    """`value` as it is, unless it names a registered model version (models:/NAME/VERSION, /latest or @ALIAS): then
    its checkpoint file, copied to this machine (services.tracking.registry) from the tracking store `uri` (None:
    $MLFLOW_TRACKING_URI, else ./mlruns; `uri_flag`: the command's flag for it, if it has one), checked first."""
    if value is None or not value.startswith("models:"):
        return value
    from services.tracking.registry import NotCopied, model_uri
    from services.tracking.registry import registered_checkpoint as fetch

    model_uri(flag, value)  # the URI's form first: a models:/NAME without a version was "no MLflow store at …"
    tracking_uri("--tracking-uri", uri, write=False)  # a server that answers, a store that opens; then MLflow
    from services.tracking.store import default_tracking_uri, local_sqlite_path

    store = uri or default_tracking_uri()
    if (db := local_sqlite_path(store)) is not None and not db.is_file():  # opening it would make an empty one
        raise UserError(f"{flag} {value}: no MLflow store at {store} (name the store train --model-name registered "
                        f"it in: $MLFLOW_TRACKING_URI{f' or {uri_flag}' if uri_flag else ''})")
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
    from services.tracking.store import local_sqlite_path

    db = local_sqlite_path(uri) or Path()
    if "uri=true" in uri.lower():  # SQLite opened 'PATH?mode=ro', a new store; with file:, MLflow made ./file:/…
        raise UserError(f"{flag} {uri}: SQLite URI filenames (uri=true) are not taken (expected "
                        "sqlite:///PATH/mlflow.db)")
    if uri == "sqlite://" or str(db) in ("", ".", ":memory:"):  # a run id printed that no store holds once it ends
        raise UserError(f"{flag} {uri}: an in-memory SQLite store, gone when the process ends (expected "
                        "sqlite:///PATH/mlflow.db)")
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

