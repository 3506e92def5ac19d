"""MLflow tracking: the project's only MLflow importer; runs, configs, metrics and artifacts from plain dicts.

Everything goes through an explicit `mlflow.MlflowClient` bound to one run id (never the fluent global
"active run"), so a `Tracker` is safe to use from Ray workers and can be pickled (the client is rebuilt).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from evaluation.outbox import Outbox

# a dead tracking server fails in seconds instead of MLflow's default minutes (7 retries, 120 s timeout):
# the Outbox keeps what could not be sent and tries again later
for _var, _value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                     ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")):
    os.environ.setdefault(_var, _value)

PARAM_VALUE_MAX = 500
_BATCH_PARAMS = 100  # MLflow's log_batch limit for params per call
REDACTED = "<redacted>"
# Key fragments that mark a secret; such values are never sent to MLflow (params, tags or config.yaml).
_SECRET_KEY = re.compile(r"(secret|passw|token|access_key|api_key|apikey|credential|private_key|session_key)", re.I)
_SECRET_LEAF = {"key", "secret", "token", "password"}
_SECRET_VALUE = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{12,}$")  # AWS access key ids


# error codes MLflow gives a request that never reached a working store (its client maps 5xx/429 and
# connection failures to these); anything else (INVALID_PARAMETER_VALUE, PERMISSION_DENIED, …) is a refusal
TRANSIENT_CODES = frozenset({"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                             "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"})


def is_transient(exc: BaseException) -> bool:
    """True for a store that could not be reached or was briefly unable to answer: worth sending again."""
    if isinstance(exc, MlflowException):
        return exc.error_code in TRANSIENT_CODES
    return isinstance(exc, OSError)  # requests' ConnectionError / Timeout are OSErrors too


def default_tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI`, else a local SQLite store `<cwd>/mlruns/mlflow.db`.

    MLflow 3 refuses the plain file store (`file:./mlruns`) unless MLFLOW_ALLOW_FILE_STORE is set, so the
    local default is SQLite; artifacts go to `<cwd>/mlruns/artifacts`.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    root = Path.cwd().resolve() / "mlruns"
    return f"sqlite:///{root / 'mlflow.db'}"


def _local_sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    return None


def make_client(tracking_uri: str | None = None) -> mlflow.MlflowClient:
    """An MLflow client for `tracking_uri` (default: `default_tracking_uri()`); creates a local SQLite folder."""
    uri = tracking_uri or default_tracking_uri()
    db = _local_sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    return mlflow.MlflowClient(tracking_uri=uri)


def get_or_create_experiment(client: mlflow.MlflowClient, name: str) -> str:
    """The id of experiment `name`, created when missing (safe against a concurrent creator)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    db = _local_sqlite_path(client.tracking_uri)
    # beside a local SQLite file, keep artifacts next to it instead of MLflow's cwd-relative ./mlruns
    location = str(db.parent / "artifacts" / name) if db is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def is_secret(key: str, value: Any = None) -> bool:
    """True when a (dotted) key or its value looks like a credential."""
    leaf = key.rsplit(".", 1)[-1].lower()
    if leaf in _SECRET_LEAF or _SECRET_KEY.search(key):
        return True
    return isinstance(value, str) and bool(_SECRET_VALUE.match(value))


def redact(config: Any) -> Any:
    """A copy of a nested config with secret values replaced by '<redacted>'."""
    if isinstance(config, Mapping):
        return {k: (REDACTED if is_secret(str(k), v) and not isinstance(v, Mapping) else redact(v))
                for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [redact(v) for v in config]
    return config


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict → {dotted.key: str(value)}, values cut to 500 characters, secrets left out."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, prefix=f"{name}."))
            continue
        if is_secret(name, value):
            continue
        text = "null" if value is None else str(value)
        flat[name] = text[:PARAM_VALUE_MAX]
    return flat


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class Tracker:
    """One MLflow run: start (or resume) it, log params/metrics/artifacts, end it.

    Metrics and tags survive a tracking outage: they wait in a bounded `Outbox` and go out once the store is
    back; images are skipped meanwhile; `end` waits up to `END_WAIT_S` for the store and never raises for it.
    """

    FLUSH_INTERVAL_S = 10.0  # buffered metrics wait at most this long (a crash loses at most this much of them)
    END_WAIT_S = float(os.environ.get("FOMM_TRACKING_END_WAIT_S", "300"))  # how long end/drain wait for the store

    def __init__(self, tracking_uri: str | None = None, experiment: str = "fomm", run_name: str | None = None,
                 run_id: str | None = None, parent_run_id: str | None = None,
                 tags: dict[str, str] | None = None) -> None:
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.experiment = experiment
        self._client = make_client(self.tracking_uri)
        self._ended = False
        self._last_flush = time.monotonic()
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        if run_id:  # resume: re-open the run and mark it running again
            self.run_id = run_id
            self._outbox = Outbox(f"MLflow run {run_id} at {self.tracking_uri}", is_transient)
            try:
                run = self._client.get_run(run_id)
                self._client.update_run(run_id, status="RUNNING")
            except Exception as exc:  # a worker restarted during an outage goes on; the run is still open
                if not is_transient(exc):
                    raise
                self.experiment_id = self.run_name = self.artifact_uri = None
                self._outbox.add_tags({str(k): str(v) for k, v in all_tags.items()})
                self._outbox.send(self._log_batch, force=True)
                return
            self.experiment_id = run.info.experiment_id
            if all_tags:
                self.set_tags(all_tags)
        else:
            self.experiment_id = get_or_create_experiment(self._client, experiment)
            run = self._client.create_run(self.experiment_id, run_name=run_name,
                                          tags={k: str(v) for k, v in all_tags.items()})
            self.run_id = run.info.run_id
            self._outbox = Outbox(f"MLflow run {self.run_id} at {self.tracking_uri}", is_transient)
        self.run_name = run.info.run_name
        self.artifact_uri = run.info.artifact_uri

    # pickling (Ray): the client holds sessions/locks, so rebuild it on the other side
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_client", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._client = make_client(self.tracking_uri)

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Flattened params (dotted keys) plus the whole config (secrets redacted) as artifact config.yaml."""
        self.log_params(flatten_config(config))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(yaml.safe_dump(redact(_plain(config)), sort_keys=False))
            self._try_artifact("config.yaml", lambda: self._client.log_artifact(self.run_id, str(path)))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params (nested dicts flattened); a key already logged with another value is skipped with a warning.

        With the store unreachable they wait in the outbox (the store itself refuses a changed value then)."""
        flat = flatten_config(params)
        try:
            existing = self._client.get_run(self.run_id).data.params
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._outbox.add_params(flat)
            self.flush()
            return
        todo = []
        for key, value in flat.items():
            if key in existing:
                if existing[key] != value:
                    warnings.warn(f"MLflow run {self.run_id}: param {key!r} already logged as "
                                  f"{existing[key]!r}; not changed to {value!r}", stacklevel=2)
                continue
            todo.append(Param(key, value))
        for chunk in _chunks(todo, _BATCH_PARAMS):
            self._client.log_batch(self.run_id, params=chunk, synchronous=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, buffered: bool = False) -> None:
        """Metrics at `step` (default 0) in batches; non-finite values are logged as they are.

        `buffered`: keep them (with their own timestamps) and send them with the next flush, which comes once
        `FLUSH_INTERVAL_S` has passed, with any unbuffered call, or with `flush()` / `end()`. For per-step
        metrics: one store round trip every few seconds instead of one per step.
        """
        now = int(time.time() * 1000)
        self._outbox.add_metrics(Metric(str(k), float(v), now, int(step or 0)) for k, v in metrics.items())
        if (not buffered or len(self._outbox.metrics) >= 1000
                or time.monotonic() - self._last_flush >= self.FLUSH_INTERVAL_S):
            self.flush()

    def flush(self, force: bool = False) -> bool:
        """Send the buffered metrics and tags now; False when the store is unreachable (they stay buffered).

        During an outage a try comes at most every `Outbox.retry_interval_s` unless `force`.
        """
        self._last_flush = time.monotonic()
        return self._outbox.send(self._log_batch, force=force)

    def drain(self, wait_s: float | None = None) -> bool:
        """Flush, waiting up to `wait_s` (default END_WAIT_S) for an unreachable store; False if it never came."""
        deadline = time.monotonic() + (self.END_WAIT_S if wait_s is None else wait_s)
        while not self.flush(force=True):
            if time.monotonic() >= deadline:
                logging.getLogger(__name__).warning(
                    "%s: the tracking store stayed unreachable; %d metrics and %d tags were not sent",
                    self._outbox.where, len(self._outbox.metrics), len(self._outbox.tags))
                return False
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        return True

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    def _log_batch(self, metrics: list[Metric] | None = None, tags: dict[str, str] | None = None,
                   params: dict[str, str] | None = None) -> None:
        self._client.log_batch(self.run_id, metrics=metrics or [], synchronous=True,
                               tags=[RunTag(k, v) for k, v in (tags or {}).items()],
                               params=[Param(k, v) for k, v in (params or {}).items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file, or a directory's contents, as run artifacts under `artifact_path`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: artifact to log does not exist")
        if path.is_dir():
            self._try_artifact(str(path), lambda: self._client.log_artifacts(self.run_id, str(path), artifact_path))
        else:
            self._try_artifact(str(path), lambda: self._client.log_artifact(self.run_id, str(path), artifact_path))

    def _try_artifact(self, name: str, log: Any) -> None:
        """An artifact upload that a tracking outage skips (with one warning) instead of failing the run."""
        try:
            log()
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._outbox.note_skipped(name, exc)

    def log_image(self, image: np.ndarray, name: str) -> None:
        """An H×W×3 uint8 image as PNG artifact images/<name>.png."""
        from PIL import Image

        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"log_image({name!r}): expected H×W×3 uint8, got {image.shape} {image.dtype}")
        filename = name if name.lower().endswith(".png") else f"{name}.png"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(filename).name
            Image.fromarray(image).save(path)
            sub = str(Path("images") / Path(filename).parent) if Path(filename).parent != Path(".") else "images"
            self._try_artifact(f"{sub}/{path.name}", lambda: self._client.log_artifact(self.run_id, str(path), sub))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Tags (values as strings); secret-looking ones are redacted."""
        self._outbox.add_tags({str(k): REDACTED if is_secret(str(k), v) else str(v) for k, v in tags.items()})
        self.flush()

    def end(self, status: str = "FINISHED", wait_s: float | None = None) -> bool:
        """Mark the run FINISHED / FAILED / KILLED (once), after sending what is buffered.

        An unreachable store is waited for up to `wait_s` (default END_WAIT_S), then given up with a warning
        (False): a run never fails because of its tracker.
        """
        if self._ended:
            return True
        deadline = time.monotonic() + (self.END_WAIT_S if wait_s is None else wait_s)
        while True:
            if self.drain(max(0.0, deadline - time.monotonic())):
                try:
                    self._client.set_terminated(self.run_id, status=status)
                    self._ended = True
                    return True
                except Exception as exc:
                    if not is_transient(exc):
                        raise
            if time.monotonic() >= deadline:
                logging.getLogger(__name__).warning("MLflow run %s: could not be marked %s, the store at %s is "
                                                    "unreachable", self.run_id, status, self.tracking_uri)
                return False
            time.sleep(1.0)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.end(end_status(exc))


def end_status(exc: BaseException | None) -> str:
    """The MLflow status of a run that ended with `exc`: FINISHED, KILLED (Ctrl-C, SIGTERM) or FAILED.

    SIGTERM arrives as services.cli.Terminated (a KeyboardInterrupt), or, in a Ray driver, as SystemExit(15):
    `ray.init` installs a SIGTERM handler that calls sys.exit(signum)."""
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
        return "FINISHED"
    if isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and exc.code == signal.SIGTERM):
        return "KILLED"
    return "FAILED"


def _plain(value: Any) -> Any:
    """Config values YAML can write safely (tuples → lists, paths/numpy → str/float)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _run_dict(run: Any) -> dict:
    info, data = run.info, run.data
    return {
        "run_id": info.run_id, "run_name": info.run_name, "status": info.status,
        "start_time": info.start_time, "end_time": info.end_time, "experiment_id": info.experiment_id,
        "artifact_uri": info.artifact_uri, "params": dict(data.params), "metrics": dict(data.metrics),
        "tags": dict(data.tags),
    }


def search_runs(tracking_uri: str | None, experiment: str, filter_string: str = "",
                order_by: list[str] | None = None) -> list[dict]:
    """Runs of `experiment` as plain dicts (run_id, run_name, status, start_time, params, metrics, tags, …).

    An experiment that does not exist has no runs. Newest first unless `order_by` says otherwise.
    """
    client = make_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs: list[dict] = []
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], filter_string=filter_string,
                                  order_by=order_by or ["attributes.start_time DESC"],
                                  max_results=1000, page_token=token)
        runs.extend(_run_dict(r) for r in page)
        token = page.token
        if not token:
            return runs


def end_open_runs(tracking_uri: str | None, experiment: str, status: str, filter_string: str = "",
                  reason: str | None = None) -> list[str]:
    """End every run of `experiment` still RUNNING (and matching `filter_string`) as `status`; their ids.

    For runs whose own process could not end them: a Tune trial stopped early, a killed driver.
    """
    where = "attributes.status = 'RUNNING'" + (f" and {filter_string}" if filter_string else "")
    client = make_client(tracking_uri)
    ended = []
    for run in search_runs(tracking_uri, experiment, where):
        if reason:
            client.set_tag(run["run_id"], "fomm.end_reason", reason)
        client.set_terminated(run["run_id"], status=status)
        ended.append(run["run_id"])
    return ended


def get_run(tracking_uri: str | None, run_id: str) -> dict:
    """One run as a plain dict (see `search_runs`)."""
    return _run_dict(make_client(tracking_uri).get_run(run_id))


def metric_history(tracking_uri: str | None, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of one metric of a run, in step order."""
    history = make_client(tracking_uri).get_metric_history(run_id, key)
    return sorted((int(m.step), float(m.value)) for m in history)


def list_artifacts(tracking_uri: str | None, run_id: str, path: str | None = None) -> list[str]:
    """Artifact paths of a run (recursively) under `path`."""
    client = make_client(tracking_uri)
    out, stack = [], [path]
    while stack:
        for item in client.list_artifacts(run_id, stack.pop()):
            (stack.append(item.path) if item.is_dir else out.append(item.path))
    return sorted(out)


def download_artifact(tracking_uri: str | None, run_id: str, path: str, dst: str | Path) -> Path:
    """Download one artifact (file or folder) of a run into `dst`; returns the local path."""
    Path(dst).mkdir(parents=True, exist_ok=True)
    return Path(make_client(tracking_uri).download_artifacts(run_id, path, str(dst)))


def register_model_version(tracking_uri: str | None, name: str, source: str, run_id: str | None = None,
                           tags: dict[str, str] | None = None) -> dict:
    """Register `source` (e.g. runs:/<id>/checkpoints/x.pth.tar or a path) as a new version of model `name`."""
    client = make_client(tracking_uri)
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # auth, network, …: not "already registered"
            raise
    mv = client.create_model_version(name, source, run_id=run_id, tags=tags)
    return {"name": name, "version": int(mv.version), "source": mv.source, "run_id": mv.run_id}


def latest_model_version(tracking_uri: str | None, name: str) -> dict:
    """The newest version of registered model `name`: {name, version, source, run_id}."""
    client = make_client(tracking_uri)
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise LookupError(f"registered model {name!r}: no versions at {client.tracking_uri}")
    mv = max(versions, key=lambda v: int(v.version))
    return {"name": name, "version": int(mv.version), "source": mv.source, "run_id": mv.run_id}


def download_model_version(tracking_uri: str | None, name: str, version: int, dst: str | Path) -> Path:
    """Download the files of a registered model version into `dst`; returns the local path."""
    from mlflow.artifacts import download_artifacts

    Path(dst).mkdir(parents=True, exist_ok=True)
    uri = tracking_uri or default_tracking_uri()
    return Path(download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dst),
                                   tracking_uri=uri))

