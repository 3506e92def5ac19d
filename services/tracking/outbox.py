"""What a tracking store could not take yet, kept through an outage and sent when it is back (imports no MLflow)."""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from services.failures import why

BATCH_METRICS = 1000  # MLflow's log_batch limits
BATCH_TAGS = 100

log = logging.getLogger("services.tracking")


class Outbox:
    """Metrics (oldest dropped first beyond `capacity`) and tags/params (latest value wins) waiting for the store;
    a batch the store refuses (a bad value) is dropped with a warning."""

    def __init__(self, where: str, transient: Callable[[BaseException], bool], capacity: int = 100_000,
                 retry_interval_s: float = 10.0) -> None:
        self.where = where
        self.transient = transient  # True: the store was unreachable (keep, retry); False: it refused (drop)
        self.capacity = capacity
        self.retry_interval_s = retry_interval_s
        self.metrics: deque[Any] = deque(maxlen=capacity)  # the oldest dropped first
        self.tags: dict[str, str] = {}
        self.params: dict[str, str] = {}  # logged during an outage (a param is written once)
        self.dropped = 0  # metrics lost to the capacity bound or refused by the store
        self.skipped: list[str] = []  # artifacts not logged during an outage
        self.offline_since: float | None = None  # time.time() of the first failure of the current outage
        self._last_try = 0.0

    @property
    def offline(self) -> bool:
        return self.offline_since is not None

    def add_metrics(self, metrics: Iterable[Any]) -> None:
        metrics = list(metrics)
        over = len(self.metrics) + len(metrics) - self.capacity
        if over > 0:
            if not self.dropped:
                log.warning("%s: more than %d metrics waiting for the tracking store; dropping the oldest",
                            self.where, self.capacity)
            self.dropped += over
        self.metrics.extend(metrics)

    def send(self, log_batch: Callable[..., None], force: bool = False) -> bool:
        """Send all through `log_batch(params= | tags= | metrics=)`; False when the store is unreachable (all kept).
        While offline, a try comes at most once per `retry_interval_s` unless `force`."""
        if self.offline and not force and time.monotonic() - self._last_try < self.retry_interval_s:
            return False
        self._last_try = time.monotonic()
        sent = 0
        for kind, pending in (("params", self.params), ("tags", self.tags)):
            while pending:
                chunk = dict(list(pending.items())[:BATCH_TAGS])
                if self._call(log_batch, **{kind: chunk}) == "offline":
                    return False
                for key in chunk:
                    if pending.get(key) == chunk[key]:
                        del pending[key]
        while self.metrics:
            chunk = list(itertools.islice(self.metrics, BATCH_METRICS))
            outcome = self._call(log_batch, metrics=chunk)
            if outcome == "offline":
                return False
            for _ in chunk:
                self.metrics.popleft()
            self.dropped += len(chunk) if outcome == "refused" else 0
            sent += len(chunk) if outcome == "ok" else 0
        if self.offline:
            log.warning("%s: the tracking store is back after %.0f s; sent %d buffered metrics (%d artifacts "
                        "were skipped)", self.where, time.time() - self.offline_since, sent, len(self.skipped))
            self.offline_since, self.skipped = None, []
        return True

    def _call(self, log_batch: Callable[..., None], **batch) -> str:
        try:
            log_batch(**batch)
            return "ok"
        except Exception as exc:  # noqa: BLE001 - sorted below: unreachable (keep) or refused (drop)
            if self.transient(exc):
                if not self.offline:
                    self.offline_since = time.time()
                    log.warning("%s: the tracking store is unreachable (%s); training goes on, metrics are kept "
                                "(up to %d) and sent when it is back", self.where, why(exc)[:200], self.capacity)
                return "offline"
            log.warning("%s: the tracking store refused a batch (%s); dropped", self.where, why(exc)[:200])
            return "refused"

    def note_skipped(self, name: str, exc: BaseException) -> None:
        """An artifact that could not be logged during an outage or on a full disk (artifacts are not buffered)."""
        if not self.skipped:
            log.warning("%s: artifact %s not logged (%s); later ones are skipped quietly until the store takes "
                        "them again", self.where, name, why(exc)[:200])
        self.skipped.append(name)

