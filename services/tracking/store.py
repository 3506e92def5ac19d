"""The MLflow store: where it is, a client for it, experiments, and which failures mean "unreachable"."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from services.failures import FULL_ERRNOS, SQLITE_FULL

# a dead tracking server fails in seconds instead of MLflow's default minutes (7 retries, 120 s timeout):
# the Outbox keeps what could not be sent and tries again later
for _var, _value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                     ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")):
    os.environ.setdefault(_var, _value)

# error codes MLflow gives a request that never reached a working store (its client maps 5xx/429 and
# connection failures to these); anything else (INVALID_PARAMETER_VALUE, PERMISSION_DENIED, …) is a refusal
TRANSIENT_CODES = frozenset({"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                             "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"})


def is_full(exc: BaseException) -> bool:
    """A store on a full disk (SQLite's "database or disk is full", ENOSPC): what it refuses, waiting will not send."""
    return SQLITE_FULL in str(exc) or getattr(exc, "errno", None) in FULL_ERRNOS


def is_transient(exc: BaseException) -> bool:
    """True for a store that could not be reached or was briefly unable to answer: worth sending again (not a full
    disk: waiting frees no space)."""
    if is_full(exc):
        return False
    if isinstance(exc, MlflowException):
        return exc.error_code in TRANSIENT_CODES
    return isinstance(exc, OSError)  # requests' ConnectionError / Timeout are OSErrors too


def default_tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI`, else `<cwd>/mlruns/mlflow.db` (SQLite: MLflow 3 refuses a plain file store)."""
    return os.environ.get("MLFLOW_TRACKING_URI", "").strip() or f"sqlite:///{Path.cwd().resolve() / 'mlruns' / 'mlflow.db'}"


def local_sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, without its SQLAlchemy options (`?timeout=20`); None: another kind of
    store."""
    return Path(uri[len("sqlite:///"):].partition("?")[0]) if uri.startswith("sqlite:///") else None


def mlflow_reads(name: str) -> bool:
    """Whether MLflow reads the environment variable `name` (its own list of them)."""
    import mlflow.environment_variables as variables

    return any(getattr(v, "name", None) == name for v in vars(variables).values())


def databricks_problem(uri: str) -> str | None:
    """Why MLflow has no Databricks sign-in for `uri` (databricks or databricks://PROFILE), None when it has one:
    DATABRICKS_HOST, or the profile in ~/.databrickscfg ($DATABRICKS_CONFIG_FILE). Read locally: whether the
    workspace takes it is the first request's to say (the SDK's own check asks the host, minutes on a dead one)."""
    import configparser

    profile = uri.partition("://")[2].split(":")[0] or os.environ.get("DATABRICKS_CONFIG_PROFILE") or "DEFAULT"
    if os.environ.get("DATABRICKS_HOST") and "://" not in uri:
        return None
    cfg = Path(os.environ.get("DATABRICKS_CONFIG_FILE") or Path.home() / ".databrickscfg").expanduser()
    profiles = configparser.ConfigParser()
    with contextlib.suppress(OSError, configparser.Error):
        profiles.read(cfg)
    if profiles.has_option(profile, "host"):
        return None
    missing = f"no profile {profile!r} with a host in {cfg}"
    return f"no Databricks sign-in: {missing if '://' in uri else f'no DATABRICKS_HOST, and {missing}'}"


def make_client(tracking_uri: str | None = None) -> mlflow.MlflowClient:
    """An MLflow client for `tracking_uri` (default: `default_tracking_uri()`); creates a local SQLite folder.
    A SQLite store is opened by one process at a time: MLflow creates a new store's tables in steps (its schema
    migrations) as its client is made, and processes creating one store at once (an evaluation started beside a
    training run on a new machine) failed, one of them with a traceback."""
    uri = tracking_uri or default_tracking_uri()
    if (db := local_sqlite_path(uri)) is None:
        return mlflow.MlflowClient(tracking_uri=uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(db.parent, os.O_RDONLY)  # its lock: nothing left beside the store
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)  # released as it closes
        return mlflow.MlflowClient(tracking_uri=uri)
    finally:
        os.close(folder)


def get_or_create_experiment(client: mlflow.MlflowClient, name: str) -> str:
    """The id of experiment `name`, created when missing (safe against a concurrent creator)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    db = local_sqlite_path(client.tracking_uri)
    # beside a local SQLite file, keep artifacts next to it instead of MLflow's cwd-relative ./mlruns
    location = str(db.parent / "artifacts" / name) if db is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
