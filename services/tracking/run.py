"""One MLflow run from plain dicts, by a client bound to its id (not MLflow's "active run"): safe in Ray workers."""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from services.errors import UserError
from services.failures import environment_failure, stopped_for, why
from services.fields import env_number
from services.tracking.outbox import Outbox
from services.tracking.owner import OWNER, gone, this_process
from services.tracking.redaction import REDACTED, flatten_config, is_secret, redact
from services.tracking.store import (
    default_tracking_uri,
    get_or_create_experiment,
    is_full,
    is_transient,
    make_client,
)


@contextlib.contextmanager
def _outage_passes() -> Iterator[list[BaseException]]:
    """A block whose failure to reach the store (`is_transient`), or to write on its full disk (`is_full`), is
    swallowed and put in the yielded list."""
    outage: list[BaseException] = []
    try:
        yield outage
    except Exception as exc:
        if not (is_transient(exc) or is_full(exc)):
            raise
        outage.append(exc)


def end_wait_s() -> float:
    """How long a run's end waits for an unreachable store: $FOMM_TRACKING_END_WAIT_S seconds, else 300."""
    return env_number("FOMM_TRACKING_END_WAIT_S", 300.0)


CHANGED_PARAM = "fomm.changed_param."  # + a param's key: the value a resumed run uses instead of the logged one

class Tracker:
    """One MLflow run. Metrics, tags and params survive a store outage in a bounded `Outbox`, artifacts are skipped,
    `end` waits up to `end_wait_s` for the store: a run never fails because of its tracker."""

    FLUSH_INTERVAL_S = 10.0  # buffered metrics wait at most this long (a crash loses at most this much of them)

    def __init__(self, tracking_uri: str | None = None, experiment: str = "fomm", run_name: str | None = None,
                 run_id: str | None = None, parent_run_id: str | None = None,
                 tags: dict[str, str] | None = None, take_over: bool = False) -> None:
        """A new run of `experiment`, or the run `run_id` re-opened (by a worker, or with `take_over` by the process
        that will end it now: a resumed job's driver, which drops the reason its last end gave)."""
        self.end_wait_s = end_wait_s()
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self._client = make_client(self.tracking_uri)
        self._ended = False
        self._last_flush = time.monotonic()
        tags = {**(tags or {}), **({MLFLOW_PARENT_RUN_ID: parent_run_id} if parent_run_id else {})}
        if run_id:  # resume: re-open the run and mark it running again
            self.run_id = run_id
            with _outage_passes():  # a worker restarted during an outage goes on; the run is still open
                self._client.update_run(run_id, status="RUNNING")
                if take_over and END_REASON in self._client.get_run(run_id).data.tags:
                    self._client.delete_tag(run_id, END_REASON)
            if take_over:
                tags[OWNER] = this_process()
        else:
            experiment_id = get_or_create_experiment(self._client, experiment)
            end_orphans(self._client, experiment_id)
            tags[OWNER] = this_process()  # the process that ends it
            self.run_id = self._client.create_run(experiment_id, run_name=run_name,
                                                  tags={k: str(v) for k, v in tags.items()}).info.run_id
        self.outbox = Outbox(f"MLflow run {self.run_id} at {self.tracking_uri}", is_transient)
        if run_id and tags:  # a new run got them at its creation
            self.set_tags(tags)

    # pickling (Ray): the client holds sessions/locks, so rebuild it on the other side
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_client"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._client = make_client(self.tracking_uri)

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Flattened params (dotted keys) plus the whole config (secrets redacted) as artifact config.yaml."""
        self.log_params(flatten_config(config))
        self._try_artifact("config.yaml", lambda: self._client.log_dict(self.run_id, redact(config),
                                                                         "config.yaml"))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params (nested dicts flattened) through the outbox. MLflow never changes a param: a key already logged
        with another value (a run resumed with new settings) keeps it, and its new value goes to tag
        `CHANGED_PARAM<key>` (the store unreachable: it refuses a changed value itself later)."""
        flat = flatten_config(params)
        with _outage_passes():
            existing = self._client.get_run(self.run_id).data.params
            changed = {k: flat[k] for k in flat.keys() & existing.keys() if existing[k] != str(flat[k])}
            self._buffer_tags({f"{CHANGED_PARAM}{k}": v for k, v in changed.items()})
            flat = {k: v for k, v in flat.items() if k not in existing}
        self.outbox.params.update(flat)
        self.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, buffered: bool = False) -> None:
        """Metrics at `step` (default 0), non-finite ones as they are; `buffered`: kept with their timestamps until
        `FLUSH_INTERVAL_S` has passed, an unbuffered call, `flush()` or `end()`."""
        now = int(time.time() * 1000)
        self.outbox.add_metrics(Metric(str(k), float(v), now, int(step or 0)) for k, v in metrics.items())
        if (not buffered or len(self.outbox.metrics) >= 1000
                or time.monotonic() - self._last_flush >= self.FLUSH_INTERVAL_S):
            self.flush()

    def last_step(self, key: str) -> int | None:
        """The highest step at which `key` reached the store (None: never, or the store is unreachable now)."""
        with _outage_passes() as outage:
            history = self._client.get_metric_history(self.run_id, key)
        return None if outage else max((int(m.step) for m in history), default=None)

    def flush(self, force: bool = False) -> bool:
        """Send what is buffered; False when the store is unreachable (kept; retried after an interval unless `force`)."""
        self._last_flush = time.monotonic()
        return self.outbox.send(self._log_batch, force=force)

    def drain(self, wait_s: float | None = None, status: str | None = None) -> bool:
        """Flush (then, with `status`, mark the run ended), waiting up to `wait_s` (default end_wait_s) for an
        unreachable store (not for a full one); False, with a warning, if it never came."""
        deadline = time.monotonic() + (self.end_wait_s if wait_s is None else wait_s)
        while True:
            with _outage_passes() as outage:
                if self.flush(force=True):
                    if status:
                        self._client.set_terminated(self.run_id, status=status)
                    return True
            full = bool(outage) and is_full(outage[0])  # a full disk: no use waiting
            if full or time.monotonic() >= deadline:
                logging.getLogger(__name__).warning(
                    "%s: the tracking store stayed %s; %d metrics and %d tags were not sent%s", self.outbox.where,
                    "full" if full else "unreachable", len(self.outbox.metrics), len(self.outbox.tags),
                    f", the run is not marked {status}" if status else "")
                return False
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

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
        log = self._client.log_artifacts if path.is_dir() else self._client.log_artifact
        self._try_artifact(str(path), lambda: log(self.run_id, str(path), artifact_path))

    def _try_artifact(self, name: str, log: Any) -> None:
        """An artifact upload that a tracking outage skips (with one warning) instead of failing the run. An artifact
        store this client writes itself (a server's s3:// artifact root) without S3 credentials, or refusing its keys,
        fails it in a line naming the store: no upload of the run would pass."""
        with _outage_passes() as outage:
            try:
                log()
            except Exception as exc:
                if is_transient(exc) or is_full(exc) or not (problem := environment_failure(exc)):
                    raise
                store = ""
                with contextlib.suppress(Exception):  # named where the store says it; the line says why anyway
                    store = f" {self._client.get_run(self.run_id).info.artifact_uri}"
                raise UserError(f"--tracking-uri {self.tracking_uri}: the run's artifact store{store}: {problem}"
                                ) from exc
        if outage:
            self.outbox.note_skipped(name, outage[0])

    def log_image(self, image: np.ndarray, name: str) -> None:
        """An H×W×3 uint8 image as PNG artifact images/<name>.png."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"log_image({name!r}): expected H×W×3 uint8, got {image.shape} {image.dtype}")
        file = f"images/{name if name.lower().endswith('.png') else name + '.png'}"
        self._try_artifact(file, lambda: self._client.log_image(self.run_id, image, artifact_file=file))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Tags (values as strings); secret-looking ones are redacted."""
        self._buffer_tags(tags)
        self.flush()

    def _buffer_tags(self, tags: Mapping[str, Any]) -> None:
        self.outbox.tags.update({str(k): REDACTED if is_secret(str(k), v) else str(v) for k, v in tags.items()})

    def end(self, status: str = "FINISHED", wait_s: float | None = None, reason: str | None = None) -> bool:
        """Mark the run FINISHED / FAILED / KILLED once, after what is buffered (see `drain`); `reason`, why it
        ended so, goes on its page as tag fomm.end_reason."""
        if reason and not self._ended:
            self._buffer_tags({END_REASON: reason[:500]})  # sent with the end, redacted as any tag
        self._ended = self._ended or self.drain(wait_s, status)
        return self._ended

    @contextlib.contextmanager
    def ended_if_raises(self) -> Iterator[Tracker]:
        """A block after which the run stays open, unless it raises: then the run ends as `__exit__` ends it
        (FAILED, or KILLED by Ctrl-C or SIGTERM, with the reason), never left RUNNING by a process that exits."""
        try:
            yield self
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.end(end_status(exc), reason=end_reason(exc))


END_REASON = "fomm.end_reason"  # the tag that says why a run ended FAILED or KILLED


def end_left_open(client: Any, run_id: str, tags: Mapping[str, str], status: str, reason: str | None) -> None:
    """End as `status` a run its own process could not end; the first reason recorded (`tags`: the run's) stays."""
    if reason and END_REASON not in tags:
        client.set_tag(run_id, END_REASON, reason)
    client.set_terminated(run_id, status=status)


def end_orphans(client: Any, experiment_id: str) -> list[str]:
    """End KILLED every run of the experiment left RUNNING by a process of this machine that is gone (see
    services.tracking.owner), with the RUNNING child runs of those (a sweep's trials die with its driver); their ids.
    A child run's own process is its sweep's to judge. Never fails the run being opened: a store that cannot be read
    or written now leaves them for the next run."""
    try:
        running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000)
        parent = {r.info.run_id: r.data.tags.get(MLFLOW_PARENT_RUN_ID) for r in running}
        dead = {r.info.run_id: who for r in running if parent[r.info.run_id] is None
                and (who := gone(r.data.tags.get(OWNER)))}
        dead.update({run_id: dead[up] for run_id, up in parent.items() if up in dead})
        for run in (r for r in running if r.info.run_id in dead):
            end_left_open(client, run.info.run_id, run.data.tags, "KILLED",
                          f"its process ({dead[run.info.run_id]}) ended without closing it (SIGKILL, the OOM killer?)")
    except Exception as exc:  # noqa: BLE001 - an outage, a server that forbids ending others' runs: not this run's
        logging.getLogger(__name__).warning("MLflow: could not end the runs left open by killed processes: %s",
                                            why(exc))
        return []
    return list(dead)


def end_status(exc: BaseException | None) -> str:
    """FINISHED, KILLED (Ctrl-C, SIGTERM, SIGHUP) or FAILED for a run that ended with `exc`; SIGTERM is services.cli.Terminated
    (a KeyboardInterrupt), or SystemExit(15) in a Ray driver (`ray.init`'s handler calls sys.exit(signum))."""
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
        return "FINISHED"
    if stopped_for:  # stopped by a fault a watcher found (services.failures.stop_main), not by the user
        return "FAILED"
    if isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and exc.code == signal.SIGTERM):
        return "KILLED"
    return "FAILED"


def end_reason(exc: BaseException | None) -> str | None:
    """Why a run that ended with `exc` did not finish, in one line (None: it finished)."""
    status = end_status(exc)
    if status == "FINISHED":
        return None
    return "stopped (Ctrl-C, SIGTERM or SIGHUP)" if status == "KILLED" else stopped_for[0] if stopped_for else why(exc)
