"""S3 request retries counted per process: services.s3 notes each one botocore makes; jobs report the count."""

from __future__ import annotations

import contextlib
import threading

_retries = 0
_lock = threading.Lock()


def note_retry() -> None:
    global _retries
    with _lock:
        _retries += 1


class counting_retries(contextlib.AbstractContextManager):  # noqa: N801 - used as a function
    """S3 requests this process retried while the block ran (botocore's retries, counted by services.s3):
    `with counting_retries() as retries: ...` then `retries.count` (inside the block: so far)."""

    def __enter__(self) -> counting_retries:
        self._start, self._end = _retries, None
        return self

    def __exit__(self, *exc: object) -> None:
        self._end = _retries

    @property
    def count(self) -> int:
        return (_retries if self._end is None else self._end) - self._start
