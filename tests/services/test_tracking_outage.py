"""A tracking store that blinks: a real MLflow server killed and started again (same port, same store) while a
Tracker logs; an unreachable one fails fast; refusals are not mistaken for "already there"; true end statuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from services.tracking.outbox import Outbox
from services.tracking.queries import end_open_runs, get_run, metric_history, search_runs
from services.tracking.registry import register_model_version
from services.tracking.run import Tracker, end_status
from services.tracking.store import is_transient
from tests.conftest import copy_store, fill_disk, free_port


def test_metrics_and_tags_logged_while_the_server_is_down_arrive_once_it_is_back(mlflow_restartable, tmp_path):
    server = mlflow_restartable
    tracker = Tracker(server.uri, experiment="outage", run_name="blink")
    tracker.log_metrics({"loss": 0.0}, step=0)
    server.stop(signal.SIGKILL)

    start = time.monotonic()
    for step in range(1, 6):  # unbuffered: each call tries the store (at most once per retry interval)
        tracker.log_metrics({"loss": float(step)}, step=step)
    tracker.set_tags({"phase": "during the outage"})
    tracker.log_params({"lr": 0.5})
    (tmp_path / "report.txt").write_text("made during the outage")
    tracker.log_artifact(tmp_path / "report.txt")  # skipped with a warning, not raised
    assert time.monotonic() - start < 30  # a dead server fails in seconds, not MLflow's default minutes
    assert tracker.outbox.offline and len(tracker.outbox.metrics) == 5
    assert tracker.outbox.skipped == [str(tmp_path / "report.txt")]

    server.start()
    assert tracker.end("FINISHED", wait_s=60)
    run = mlflow.MlflowClient(server.uri).get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["phase"] == "during the outage"
    assert run.data.params["lr"] == "0.5"
    assert metric_history(server.uri, tracker.run_id, "loss") == [(s, float(s)) for s in range(6)]
    assert not tracker.outbox.offline and not tracker.outbox.metrics


def test_the_outbox_is_bounded_and_keeps_the_newest_metrics_for_a_dead_store():
    client = mlflow.MlflowClient(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    outbox = Outbox("dead store", is_transient, capacity=4, retry_interval_s=3600)
    outbox.add_metrics(Metric("m", float(i), 0, i) for i in range(10))
    start = time.monotonic()
    assert not outbox.send(lambda **batch: client.log_batch("0" * 32, synchronous=True, **batch))
    assert time.monotonic() - start < 30
    assert [m.step for m in outbox.metrics] == [6, 7, 8, 9] and outbox.dropped == 6
    assert not outbox.send(lambda **batch: pytest.fail("tried again within the retry interval"))


def test_a_batch_the_store_refuses_is_dropped_and_the_run_goes_on(sqlite_uri):
    tracker = Tracker(sqlite_uri, experiment="refused", run_name="r")
    tracker.log_metrics({"bad name*": 1.0}, step=1)  # MLflow refuses this metric name (INVALID_PARAMETER_VALUE)
    tracker.log_metrics({"good": 2.0}, step=2)
    assert tracker.outbox.dropped == 1 and not tracker.outbox.offline
    assert metric_history(sqlite_uri, tracker.run_id, "good") == [(2, 2.0)]
    assert tracker.end()


def test_only_already_exists_counts_as_already_registered(sqlite_uri):
    first = register_model_version(sqlite_uri, "outage-m", "/tmp/a.pth.tar")
    again = register_model_version(sqlite_uri, "outage-m", "/tmp/b.pth.tar")  # the name exists: a new version
    assert (first["version"], again["version"]) == (1, 2)
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MlflowException) as raised:  # the registry's own error, not a later one hiding it
        register_model_version(dead, "outage-m", "/tmp/c.pth.tar")
    assert "registered-models/create" in str(raised.value) and is_transient(raised.value)


def test_end_status_names_how_a_run_ended(sqlite_uri):
    assert end_status(None) == "FINISHED"
    assert end_status(SystemExit(0)) == "FINISHED"
    assert end_status(KeyboardInterrupt()) == "KILLED"
    assert end_status(SystemExit(2)) == "FAILED"
    assert end_status(SystemExit(15)) == "KILLED"  # ray.init's SIGTERM handler: sys.exit(signum)
    assert end_status(ValueError("x")) == "FAILED"
    with pytest.raises(KeyboardInterrupt), Tracker(sqlite_uri, experiment="ctrl-c") as tracker:
        raise KeyboardInterrupt
    assert get_run(sqlite_uri, tracker.run_id)["status"] == "KILLED"


def test_end_open_runs_ends_only_the_matching_running_runs(sqlite_uri):
    parent = Tracker(sqlite_uri, experiment="sweep", run_name="parent")
    stopped = Tracker(sqlite_uri, experiment="sweep", run_name="trial-a", parent_run_id=parent.run_id)
    done = Tracker(sqlite_uri, experiment="sweep", run_name="trial-b", parent_run_id=parent.run_id)
    done.end("FINISHED")
    ended = end_open_runs(sqlite_uri, "sweep", "KILLED", f"tags.mlflow.parentRunId = '{parent.run_id}'",
                                   reason="stopped early")
    assert ended == [stopped.run_id]
    runs = {r["run_name"]: r for r in search_runs(sqlite_uri, "sweep")}
    assert runs["trial-a"]["status"] == "KILLED" and runs["trial-a"]["tags"]["fomm.end_reason"] == "stopped early"
    assert runs["trial-b"]["status"] == "FINISHED" and runs["parent"]["status"] == "RUNNING"

    Tracker(sqlite_uri, run_id=stopped.run_id)  # a lingering worker re-opens the stopped trial's run
    assert end_open_runs(sqlite_uri, "sweep", "KILLED", reason="the sweep ended") == [stopped.run_id, parent.run_id]
    trial = get_run(sqlite_uri, stopped.run_id)
    assert trial["status"] == "KILLED" and trial["tags"]["fomm.end_reason"] == "stopped early"  # the first reason stays


SIGTERMED = """
import signal, sys, time
# the signal state a shell or a pod starts a driver with; what this one inherited from the test process is said
inherited = [line.strip() for line in open("/proc/self/status") if line.startswith(("SigBlk", "SigIgn"))]
print("inherited:", *inherited, file=sys.stderr, flush=True)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGHUP})
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
from services.tracking.run import Tracker
from services.cli import run_cli

def main(argv):
    with Tracker(argv[0], experiment="sigterm", run_name=argv[1]) as tracker:
        print(tracker.run_id, flush=True)
        if argv[1] == "ray":  # a Ray driver: ray.init sets its own SIGTERM handler (sys.exit(15))
            from services.ray_start import ensure_ray
            ensure_ray(num_cpus=1, log_to_driver=False)
            print("ready", flush=True)
        else:
            print("ready", flush=True)
        for _ in range(1200):  # waiting as a driver polls: short sleeps (see the test's docstring)
            time.sleep(0.1)

sys.exit(run_cli(main, sys.argv[1:], "job"))
"""


@pytest.mark.parametrize(("driver", "sig"), [("plain", signal.SIGTERM),
                                             pytest.param("ray", signal.SIGTERM, marks=pytest.mark.ray),
                                             ("plain", signal.SIGHUP)])
def test_a_sigterm_ends_the_run_killed(fresh_sqlite_uri, driver, sig, tmp_path, request):
    """Kubernetes, `ray job stop` and `kill` send SIGTERM: the run says KILLED, not RUNNING forever; so does
    SIGHUP, which a closed terminal sends (an SSH session gone; it ended the process at once, the run RUNNING). The Ray
    driver connects to the session cluster (starting a local Ray would take seconds more). The driver waits in short
    sleeps: the kernel may hand the signal to any thread (MLflow's, Ray's), and Python runs its handler only when the
    main thread next runs bytecode, so one 120 s sleep could hide it for 120 s (it did twice in about 20 suite runs,
    cause not pinned down). The driver starts with SIGTERM unblocked and at its default, as a shell or a pod starts
    it, and says on stderr what it inherited. A store of its own, and 30 s for the run's end to reach it: a store
    that does not answer shows as the tracker's warning."""
    sqlite_uri = fresh_sqlite_uri
    repo = Path(__file__).resolve().parents[2]
    address = request.getfixturevalue("ray_head")["address"] if driver == "ray" else ""
    env = {**os.environ, "PYTHONPATH": str(repo), "RAY_ADDRESS": address, "FOMM_TRACKING_END_WAIT_S": "30"}
    proc = subprocess.Popen([sys.executable, "-c", SIGTERMED, sqlite_uri, driver], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, start_new_session=True)
    try:
        run_id = proc.stdout.readline().strip()
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"{sig.name} did not end the driver within 90 s: {proc.communicate()[1][-3000:]}"
                                 ) from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, err  # a Ray driver too (ray.init's handler made it exit 15, saying nothing)
    assert get_run(sqlite_uri, run_id)["status"] == "KILLED"
    assert err.strip().splitlines()[-1] == f"job: stopped by {sig.name}", err


def test_a_store_whose_disk_fills_drops_what_it_refuses_and_ends_without_waiting(small_disk, mlflow_template_db,
                                                                                    tmp_path):
    """A full disk is not an outage: waiting frees no space. The run goes on, each refused batch dropped with a
    warning, and `end` gives up at once (it waited FOMM_TRACKING_END_WAIT_S, 300 s, for the disk to come back)."""
    uri = f"sqlite:///{copy_store(mlflow_template_db, small_disk)}"
    tracker = Tracker(uri, experiment="full", run_name="r")
    tracker.log_metrics({"loss": 0.0}, step=0)
    fill_disk(small_disk)
    tracker.log_metrics({f"m{i}": float(i) for i in range(200)}, step=1)  # more rows than the free pages take
    (tmp_path / "report.txt").write_text("x" * 100_000)
    tracker.log_artifact(tmp_path / "report.txt")  # skipped with a warning, not raised
    assert not tracker.outbox.offline and tracker.outbox.dropped == 200 and not tracker.outbox.metrics
    start = time.monotonic()
    assert not tracker.end()  # the run cannot be marked ended on a full disk
    assert time.monotonic() - start < 10
