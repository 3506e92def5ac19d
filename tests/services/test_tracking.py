"""services.tracking against a real local MLflow store (SQLite): runs, params, metrics, artifacts, resume."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from services.tracking.queries import get_run, search_runs
from services.tracking.redaction import REDACTED, flatten_config, redact
from services.tracking.registry import download_model_version, latest_model_version, register_run_files
from services.tracking.run import Tracker
from services.tracking.store import default_tracking_uri, make_client
from tests.conftest import run_artifacts


@pytest.fixture()
def uri(sqlite_uri) -> str:
    return sqlite_uri


def test_default_tracking_uri(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert default_tracking_uri() == "http://127.0.0.1:5999"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"


def test_flatten_and_redact() -> None:
    config = {"model": {"num_kp": 10, "scales": [1, 0.5]}, "storage": {"key": "AKIA", "secret": "s",
              "aws_secret_access_key": "x", "endpoint": "http://h"}, "token": "t", "note": "AKIAABCDEFGHIJKLMNOP",
              "long": "x" * 900, "empty": {}, "none": None}
    flat = flatten_config(config)
    assert flat["model.num_kp"] == "10" and flat["model.scales"] == "[1, 0.5]"
    assert flat["storage.endpoint"] == "http://h" and flat["none"] == "null" and flat["empty"] == "{}"
    assert len(flat["long"]) == 500
    assert not any(k in flat for k in ("storage.key", "storage.secret", "storage.aws_secret_access_key",
                                       "token", "note"))
    red = redact(config)
    assert red["storage"]["secret"] == REDACTED and red["model"] == config["model"]


def test_run_round_trip(uri, tmp_path) -> None:
    with Tracker(uri, "t-roundtrip", run_name="first", tags={"team": "eval"}) as t:
        t.log_config({"model": {"num_kp": 5}, "aws_secret_access_key": "never-logged"})
        t.log_params({"checkpoint": "a.pth.tar"})
        t.log_metrics({"l1": 0.25, "akd/dlib-68": 1.5}, step=2)
        t.log_metrics({"l1": 0.2}, step=3)
        t.log_image(np.zeros((6, 8, 3), np.uint8), "grid")
        t.log_image(np.zeros((6, 8, 3), np.uint8), "train/step_00000002")  # a name with a folder
        (tmp_path / "table.parquet").write_bytes(b"x")
        t.log_artifact(tmp_path / "table.parquet", "tables")
    runs = search_runs(uri, "t-roundtrip")
    assert len(runs) == 1
    run = runs[0]
    assert run["run_id"] == t.run_id and run["run_name"] == "first" and run["status"] == "FINISHED"
    assert run["params"] == {"model.num_kp": "5", "checkpoint": "a.pth.tar"}
    assert run["metrics"] == {"l1": 0.2, "akd/dlib-68": 1.5}  # latest value per key
    assert run["tags"]["team"] == "eval"
    assert run_artifacts(uri, t.run_id, tmp_path / "dl") == ["config.yaml", "images/grid.png",
                                                             "images/train/step_00000002.png", "tables/table.parquet"]
    config_yaml = (tmp_path / "dl" / "config.yaml").read_text()
    assert "never-logged" not in config_yaml and "num_kp: 5" in config_yaml


def test_failed_status_on_exception_resume_and_nesting(uri) -> None:
    with pytest.raises(RuntimeError), Tracker(uri, "t-status") as t:
        raise RuntimeError("boom")
    assert get_run(uri, t.run_id)["status"] == "FAILED"
    parent = Tracker(uri, "t-status", run_name="parent")
    child = Tracker(uri, "t-status", parent_run_id=parent.run_id)
    child.end()
    parent.end()
    assert get_run(uri, child.run_id)["tags"]["mlflow.parentRunId"] == parent.run_id
    resumed = Tracker(uri, run_id=parent.run_id)  # resume: same run, running again
    assert resumed.run_id == parent.run_id
    assert get_run(uri, parent.run_id)["status"] == "RUNNING"
    resumed.log_params({"a": 1})
    resumed.log_params({"a": 2})
    resumed.end("KILLED")
    assert get_run(uri, parent.run_id)["status"] == "KILLED"
    assert get_run(uri, parent.run_id)["params"]["a"] == "1"  # MLflow never changes a param: the new value is a tag
    assert get_run(uri, parent.run_id)["tags"]["fomm.changed_param.a"] == "2"


def test_a_run_whose_process_was_killed_is_ended_killed_by_the_next_run_of_its_experiment(uri) -> None:
    """SIGKILL (the OOM killer) left a run RUNNING forever: MLflow has no heartbeat. The next run of the experiment
    on this machine ends it KILLED, with its RUNNING child runs; a run whose process lives, one owned on another
    machine or in another container, and another experiment's are left as they are."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from services.tracking.owner import OWNER, gone, this_process

    code = ("import os, signal, sys\nfrom services.tracking.run import Tracker\n"
            "t = Tracker(sys.argv[1], 't-orphans', run_name='killed')\n"
            "Tracker(sys.argv[1], 't-orphans', run_name='trial', parent_run_id=t.run_id)\n"
            "Tracker(sys.argv[1], 't-orphans-elsewhere', run_name='killed-elsewhere')\n"
            "print(t.run_id, flush=True)\nos.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert done.returncode == -signal.SIGKILL, done.stderr
    killed = done.stdout.strip()
    alive = Tracker(uri, "t-orphans", run_name="alive")  # this process's, not ended
    elsewhere = {**json.loads(this_process()), "boot": "another-machine", "pid": 1}
    client = make_client(uri)
    foreign = client.create_run(client.get_run(alive.run_id).info.experiment_id,
                                run_name="foreign", tags={OWNER: json.dumps(elsewhere)}).info.run_id
    assert gone(this_process()) is None and gone(json.dumps(elsewhere)) is None and gone("not json") is None
    reused = {**json.loads(this_process()), "start": "0"}  # this PID, another process's start: it was reused
    assert gone(json.dumps(reused)) == f"{reused['host']}, PID {os.getpid()}"

    Tracker(uri, "t-orphans", run_name="next").end()
    runs = {r["run_name"]: r for r in search_runs(uri, "t-orphans")}
    assert runs["killed"]["run_id"] == killed and runs["killed"]["status"] == "KILLED"
    assert runs["killed"]["tags"]["fomm.end_reason"].startswith("its process (") and "ended without closing it" \
        in runs["killed"]["tags"]["fomm.end_reason"]
    assert runs["trial"]["status"] == "KILLED"  # the sweep's trial, with its driver
    assert (runs["alive"]["status"], runs["foreign"]["status"], runs["next"]["status"]) == ("RUNNING", "RUNNING",
                                                                                          "FINISHED")
    assert [r["status"] for r in search_runs(uri, "t-orphans-elsewhere")] == ["RUNNING"]
    alive.end()
    client.set_terminated(foreign)

    resumed = Tracker(uri, run_id=killed, take_over=True)  # `train --resume`'s driver: the run is its own now
    run = get_run(uri, killed)
    assert run["status"] == "RUNNING" and "fomm.end_reason" not in run["tags"]
    assert run["tags"][OWNER] == this_process()
    resumed.end()
    assert get_run(uri, killed)["status"] == "FINISHED" and "fomm.end_reason" not in get_run(uri, killed)["tags"]


def test_a_run_that_did_not_finish_says_why_on_its_page(uri) -> None:
    """An evaluation (or any stage's run) that failed or was stopped was FAILED or KILLED with no word why: only
    training runs and sweep trials were tagged. The tag holds the one line the command printed."""
    import errno

    with pytest.raises(OSError), Tracker(uri, "t-why") as failed:
        raise OSError(errno.ENOSPC, "No space left on device", "/out/per_frame.parquet")
    with pytest.raises(KeyboardInterrupt), Tracker(uri, "t-why") as stopped:
        raise KeyboardInterrupt
    with Tracker(uri, "t-why") as finished:
        pass
    runs = {t.run_id: get_run(uri, t.run_id) for t in (failed, stopped, finished)}
    assert [(r["status"], r["tags"].get("fomm.end_reason")) for r in runs.values()] == [
        ("FAILED", "/out/per_frame.parquet: no space left on the device"),
        ("KILLED", "stopped (Ctrl-C, SIGTERM or SIGHUP)"), ("FINISHED", None)]
    keyed = Tracker(uri, "t-why")  # the reason is a tag like any other: one that is a credential is redacted
    keyed.end("FAILED", reason="AKIAABCDEFGHIJKLMNOP")
    assert get_run(uri, keyed.run_id)["tags"]["fomm.end_reason"] == REDACTED


def test_tracker_pickles_for_ray_workers(uri) -> None:
    t = Tracker(uri, "t-pickle")
    clone = pickle.loads(pickle.dumps(t))
    clone.log_metrics({"from_worker": 1.0})
    t.end()
    assert get_run(uri, t.run_id)["metrics"] == {"from_worker": 1.0}
    assert search_runs(uri, "no-such-experiment") == []


def test_buffered_metrics_wait_for_the_interval_then_arrive_whole_and_in_order(uri) -> None:
    t = Tracker(uri, "t-buffer")
    t.FLUSH_INTERVAL_S = 3600.0  # no timed flush within the test
    client = make_client(uri)
    for step in range(5):
        t.log_metrics({"loss": 1.0 / (step + 1), "lr": 0.1}, step=step, buffered=True)
    assert client.get_metric_history(t.run_id, "loss") == []  # still buffered
    t.log_metrics({"val_l1": 0.5}, step=5)  # an unbuffered call sends what waits first
    history = client.get_metric_history(t.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert [m.step for m in client.get_metric_history(t.run_id, "val_l1")] == [5]

    t.log_metrics({"loss": 0.1}, step=6, buffered=True)
    t.FLUSH_INTERVAL_S = 0.0  # the interval has passed: the next buffered call flushes
    t.log_metrics({"loss": 0.05}, step=7, buffered=True)
    assert [m.step for m in client.get_metric_history(t.run_id, "loss")] == [0, 1, 2, 3, 4, 6, 7]

    t.FLUSH_INTERVAL_S = 3600.0
    t.log_metrics({"loss": 0.01}, step=8, buffered=True)
    t.end()  # ending the run loses nothing
    assert get_run(uri, t.run_id)["metrics"]["loss"] == 0.01
    assert len(client.get_metric_history(t.run_id, "loss")) == 8


def test_run_files_registered_as_model_versions_come_back_whole(uri, tmp_path) -> None:
    with Tracker(uri, "t-registry") as t:
        pass
    files = tmp_path / "model"
    files.mkdir()
    (files / "checkpoint.pth.tar").write_bytes(b"\x00weights\xff")
    (files / "config.yaml").write_text("model_params: {}\n")
    first = register_run_files(uri, "t-model", t.run_id, files, tags={"step": "4"})
    (files / "checkpoint.pth.tar").write_bytes(b"newer")
    second = register_run_files(uri, "t-model", t.run_id, files, tags={"step": "8"}, artifact_path="model-8")
    assert (first["version"], second["version"]) == (1, 2) and first["source"] == f"runs:/{t.run_id}/model"
    latest = latest_model_version(uri, "t-model")
    assert latest["version"] == 2 and latest["run_id"] == t.run_id and latest["tags"] == {"step": "8"}
    got = download_model_version(uri, "t-model", 1, tmp_path / "dl")
    assert sorted(p.name for p in got.iterdir()) == ["checkpoint.pth.tar", "config.yaml"]
    assert (got / "checkpoint.pth.tar").read_bytes() == b"\x00weights\xff"  # version 1 keeps its own files
    with pytest.raises(LookupError, match="no versions"):
        latest_model_version(uri, "t-no-such-model")


def test_a_version_copied_into_the_cache_evicts_those_unused_for_a_month(uri, tmp_path, monkeypatch) -> None:
    """A node animating with models:/NAME@champion copies each version the alias moves to: kept for ever, they filled
    its disk. A new copy removes the versions no process used for $FOMM_MODEL_CACHE_DAYS (30) days; a use counts as
    one, and a copy another process has under way (its dot-named staging folder) stays."""
    from services.errors import UserError
    from services.tracking.registry import registered_checkpoint

    with Tracker(uri, "t-cache") as t:
        pass
    files = tmp_path / "model"
    files.mkdir()
    (files / "checkpoint.pth.tar").write_bytes(b"weights")
    register_run_files(uri, "nightly", t.run_id, files)
    register_run_files(uri, "nightly", t.run_id, files)
    cache = tmp_path / "cache" / "fomm" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    day = 86400
    for name, age_days in (("old-v1-a", 31), ("recent-v1-b", 29), (".nightly-v9-c-123", 40)):
        (cache / name).mkdir(parents=True)
        (cache / name / "checkpoint.pth.tar").write_bytes(b"x")
        os.utime(cache / name, (time.time() - age_days * day,) * 2)
    first = Path(registered_checkpoint("--checkpoint", "models:/nightly/1", uri))
    assert first.read_bytes() == b"weights"
    assert sorted(p.name for p in cache.iterdir()) == [".nightly-v9-c-123", first.parent.name, "recent-v1-b"]
    os.utime(first.parent, (time.time() - 40 * day,) * 2)
    assert Path(registered_checkpoint("--checkpoint", "models:/nightly/1", uri)) == first  # a use: fresh again
    assert time.time() - first.parent.stat().st_mtime < 60
    monkeypatch.setenv("FOMM_MODEL_CACHE_DAYS", "0")  # keep only the version copied now
    second = Path(registered_checkpoint("--checkpoint", "models:/nightly/2", uri))
    assert sorted(p.name for p in cache.iterdir()) == [".nightly-v9-c-123", second.parent.name]
    monkeypatch.setenv("FOMM_MODEL_CACHE_DAYS", "-1")
    with pytest.raises(UserError, match=r"^\$FOMM_MODEL_CACHE_DAYS: "):
        registered_checkpoint("--checkpoint", "models:/nightly/1", uri)


MAKES_A_RUN = """
import os, sys, time
from services.tracking.run import Tracker

open(sys.argv[2] + "." + sys.argv[3], "w").close()  # MLflow imported: ready
while not os.path.exists(sys.argv[2]):  # all start together
    time.sleep(0.01)
Tracker(tracking_uri=sys.argv[1], experiment="together", run_name=sys.argv[3]).end("FINISHED")
"""


def test_processes_creating_one_new_sqlite_store_at_once_all_log_to_it(tmp_path, repo_root) -> None:
    """An evaluation started beside a training run on a new machine: MLflow creates a new store's tables in steps
    as a client opens it, and three processes doing so at once all failed (`table _alembic_tmp_metrics already
    exists`, one with alembic's traceback). A local SQLite store is opened one process at a time."""
    import subprocess
    import sys

    uri, go = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", MAKES_A_RUN, uri, str(go), f"run-{i}"], cwd=repo_root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert [code for code, _ in outcomes] == [0, 0, 0], [err[-1500:] for _, err in outcomes]
    assert sorted(r["run_name"] for r in search_runs(uri, "together")) == ["run-0", "run-1", "run-2"]
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["mlflow.db"]  # no lock file beside it


def test_a_server_that_takes_the_connection_and_never_answers_is_refused_naming_the_flag() -> None:
    """It passed the check, and MLflow's client retried for a minute, ending in a line that named no flag."""
    import socket

    from services.errors import UserError
    from services.tracking.store_checks import mlflow_answers

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts connections; nothing reads them
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(UserError, match=rf"^--tracking-uri {uri}: the tracking server took the connection but "
                                            r"gave no answer within 0.5 s$"):
            mlflow_answers("--tracking-uri", uri, timeout=0.5)
