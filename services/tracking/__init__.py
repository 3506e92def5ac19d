"""MLflow tracking, the project's only MLflow importer: `run` writes one run from plain dicts, `queries` reads runs
back as plain dicts, `registry` keeps model versions, `redaction` makes configs safe to log, `outbox` holds what
an outage kept back, `store` finds the store and tells an outage from a refusal."""

from services.tracking.outbox import Outbox
from services.tracking.queries import (
    download_artifact,
    end_open_runs,
    get_run,
    list_artifacts,
    metric_history,
    search_runs,
)
from services.tracking.redaction import REDACTED, flatten_config, is_secret, redact
from services.tracking.registry import (
    download_model_version,
    latest_model_version,
    register_model_version,
    register_run_files,
)
from services.tracking.run import Tracker, end_status
from services.tracking.store import default_tracking_uri, is_transient, make_client

__all__ = ["REDACTED", "Outbox", "Tracker", "default_tracking_uri", "download_artifact", "download_model_version",
           "end_open_runs", "end_status", "flatten_config", "get_run", "is_secret", "is_transient",
           "latest_model_version", "list_artifacts", "make_client", "metric_history", "redact",
           "register_model_version", "register_run_files", "search_runs"]
