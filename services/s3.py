"""S3 through s3fs with botocore's "standard" retries, counted per process; credentials come from the environment."""

from __future__ import annotations

import functools
import os

import s3fs

from services.s3_retries import note_retry


def _count_retry(attempts: int, **_: object) -> None:
    """botocore 'needs-retry' handler: called after every attempt; an attempt after the first was a retry."""
    if attempts > 1:
        note_retry()


class CountingS3FileSystem(s3fs.S3FileSystem):
    """s3fs whose client counts botocore's retries (`services.s3_retries.counting_retries`), in whichever process it is unpickled."""

    async def set_session(self, refresh: bool = False, kwargs: dict | None = None):  # noqa: ANN201 - a client
        client = await super().set_session(refresh=refresh, kwargs=kwargs or {})
        if not getattr(client, "_fomm_counts_retries", False):
            client.meta.events.register("needs-retry.s3", _count_retry)
            client._fomm_counts_retries = True
        return client


@functools.lru_cache(maxsize=16)
def s3_filesystem(endpoint: str | None, attempts: int, answer_s: float | None = None) -> CountingS3FileSystem:
    """One S3 filesystem per process and `endpoint` (None: AWS): `attempts` retries per request (botocore's, after
    the first try), listing caches off. `answer_s`: each try answered within that many seconds, and no rounds of
    s3fs's own on a timeout (the input checks' probe); else botocore's 60 s a try, and s3fs's five rounds."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    client = {"region_name": region, **({"endpoint_url": endpoint} if endpoint else {})}
    timeouts = {"connect_timeout": answer_s, "read_timeout": answer_s} if answer_s else {}
    fs = CountingS3FileSystem(client_kwargs=client, skip_instance_cache=True, use_listings_cache=False,
                              config_kwargs={"retries": {"max_attempts": attempts, "mode": "standard"}, **timeouts})
    if answer_s:
        fs.retries = 1
    return fs
