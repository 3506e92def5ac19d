"""Reading a tracking store: runs as plain dicts, metric histories; ending runs left open."""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.utils import get_results_from_paginated_fn
from mlflow.utils.search_utils import SearchUtils

from services.errors import UserError
from services.tracking.run import end_left_open
from services.tracking.store import make_client


def _run_dict(run: Run) -> dict:
    """run_id, run_name, status, start_time, end_time, experiment_id, artifact_uri, …, params, metrics, tags."""
    d = run.to_dictionary()
    return {**d["info"], **d.get("data", {"params": {}, "metrics": {}, "tags": {}})}


def check_filter(flag: str, text: str) -> None:
    """A search filter MLflow can parse (else a UserError naming the flag, before any query)."""
    try:
        clauses = SearchUtils.parse_search_filter(text)
    except MlflowException as err:
        raise UserError(f"{flag} {text!r}: {err.message}") from None
    valid = {"metric": SearchUtils.VALID_METRIC_COMPARATORS, "parameter": SearchUtils.VALID_PARAM_COMPARATORS,
             "tag": SearchUtils.VALID_TAG_COMPARATORS}  # parsed, a wrong one failed in the store: "MLflow: Invalid …"
    for clause in clauses:
        if (ok := valid.get(clause["type"])) is not None and clause["comparator"].upper() not in ok:
            raise UserError(f"{flag} {text!r}: {clause['comparator']!r} does not compare a {clause['type']} "
                            f"(use {', '.join(sorted(ok))})")


def search_runs(tracking_uri: str | None, experiment: str, filter_string: str = "") -> list[dict]:
    """Runs of `experiment` as plain dicts (see `_run_dict`), newest first; an experiment that does not exist has none."""
    client = make_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = get_results_from_paginated_fn(lambda n, token: client.search_runs(
        [exp.experiment_id], filter_string=filter_string, order_by=["attributes.start_time DESC"], max_results=n,
        page_token=token), 1000)  # MLflow's own pager: every page, 1000 runs a request
    return [_run_dict(r) for r in runs]


def experiment_names(tracking_uri: str | None) -> list[str]:
    """The names of the store's active experiments, sorted."""
    client = make_client(tracking_uri)
    return sorted(e.name for e in get_results_from_paginated_fn(
        lambda n, token: client.search_experiments(max_results=n, page_token=token), 1000))


def end_open_runs(tracking_uri: str | None, experiment: str, status: str, filter_string: str = "",
                  reason: str | None = None) -> list[str]:
    """End as `status` every run of `experiment` still RUNNING (and matching `filter_string`) whose own process
    could not (a Tune trial stopped early, a killed driver); their ids. The first `reason` recorded stays."""
    where = "attributes.status = 'RUNNING'" + (f" and {filter_string}" if filter_string else "")
    client = make_client(tracking_uri)
    ended = []
    for run in search_runs(tracking_uri, experiment, where):
        end_left_open(client, run["run_id"], run.get("tags") or {}, status, reason)
        ended.append(run["run_id"])
    return ended


def get_run(tracking_uri: str | None, run_id: str) -> dict:
    """One run as a plain dict (see `search_runs`)."""
    return _run_dict(make_client(tracking_uri).get_run(run_id))


def metric_history(tracking_uri: str | None, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of one metric of a run, in step order."""
    return sorted((int(m.step), float(m.value)) for m in make_client(tracking_uri).get_metric_history(run_id, key))
