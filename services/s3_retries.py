"""S3 request retries counted per process: services.s3 notes each one botocore makes; jobs report the count."""

from __future__ import annotations

import threading

_retries = 0
_lock = threading.Lock()


def retry_count() -> int:
    """S3 request attempts this process retried so far (botocore's retries, counted by services.s3)."""
    return _retries


def note_retry() -> None:
    global _retries
    with _lock:
        _retries += 1
