"""pipelines/train.py as Ray jobs: a 2-worker run (one worker per node: --placement SPREAD) stopped after its first
checkpoint, then resubmitted with --resume, continues from that checkpoint (epoch, step and optimiser state) and
logs to the same MLflow run. Ctrl-C ends a run as KILLED with one line, exit 130."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from fomm.checkpoint import read_checkpoint
from tests.conftest import as_a_shell_starts, last_line
from training.job import TrainJob, registered_checkpoints

TRAIN = Path(__file__).resolve().parents[2] / "pipelines" / "train.py"
SETTINGS = ["--set", "dataset_params.frame_shape=[32,32,3]", "--set", "train_params.num_repeats=2",
            "--set", "train_params.batch_size=2", "--set", "train_params.scales=[1,0.5]",
            "--set", "train_params.checkpoint_every_steps=2",
            "--set", "train_params.loss_weights.perceptual=[10,10,0,0,0]"]


def test_train_help():
    out = subprocess.run([sys.executable, str(TRAIN), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in ("--config", "--data", "--storage", "--workers", "--gpus-per-worker", "--max-steps",
                 "--tracking-uri", "--resume"):
        assert flag in out.stdout


def _wait_for(predicate, timeout: float, what: str, every: float = 0.2) -> None:  # noqa: ANN001
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise TimeoutError(f"{what} within {timeout:.0f}s")


def _submit(jobs, entrypoint: list[str], env: dict, timeout: float = 120) -> str:  # noqa: ANN001
    """Submit a job, waiting for the head's job agent (it can come up a little after the dashboard)."""
    deadline = time.time() + timeout
    while True:
        try:
            return jobs.submit_job(entrypoint=shlex.join(entrypoint), runtime_env=env)
        except RuntimeError as err:
            if "No available agent" not in str(err) or time.time() > deadline:
                raise
            time.sleep(2)


@pytest.mark.ray
def test_stopped_job_resumes_from_its_checkpoint(ray_head, mlflow_server, synthetic_shards, tiny_config_path,
                                                 tmp_path, wait_registered):
    from ray.job_submission import JobStatus, JobSubmissionClient

    storage = tmp_path / "storage"
    train = [sys.executable, str(TRAIN), "--config", str(tiny_config_path), "--data", str(synthetic_shards),
             "--storage", str(storage), "--name", "job", "--workers", "2", "--placement", "SPREAD", "--max-steps", "10", "--epochs", "2",
             "--tracking-uri", mlflow_server, "--val-clips", "0", "--log-images-every", "0", *SETTINGS]
    jobs = JobSubmissionClient(ray_head["dashboard"])
    env = {"env_vars": {"OMP_NUM_THREADS": "1"}}

    job = TrainJob(config=str(tiny_config_path), data=str(synthetic_shards), storage=str(storage), name="job")
    first = _submit(jobs, train, env)
    # stop once Ray Train has registered a checkpoint: files on disk alone may be a report still in flight
    try:
        wait_registered(job, timeout=500)
    except TimeoutError as err:  # say what held the cluster: the job's log and what is running
        raise AssertionError(f"{err}; the job: {jobs.get_job_status(first)}\n{jobs.get_job_logs(first)[-3000:]}\n"
                             f"{ray_head['cluster'].describe()}") from None
    jobs.stop_job(first)  # SIGTERM to the driver: its Train controller and workers go with it
    _wait_for(lambda: jobs.get_job_status(first).is_terminal(), 60, "the first job did not stop")
    assert jobs.get_job_status(first) == JobStatus.STOPPED
    _wait_for(lambda: "train: stopped by SIGTERM" in jobs.get_job_logs(first), 30, "no SIGTERM line in the job's log")
    logs = jobs.get_job_logs(first)  # one line saying where the work is kept (was: exit 1, nothing said)
    assert last_line(logs) == (f"train: stopped by SIGTERM (work done so far is kept in {storage / 'job'}: "
                                  "rerun the same command with --resume to go on from its last checkpoint)"), logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]
    # the stopped job holds no placement group: a group left CREATED keeps its CPUs from every later job
    from ray.util.state import list_placement_groups

    job_id = jobs.get_job_info(first).driver_info.id
    held = [g for g in list_placement_groups(address=ray_head["dashboard"], detail=True)
            if g.placement_group_id.endswith(job_id) and g.state != "REMOVED"]
    assert held == [], held
    registered = registered_checkpoints(job)
    kept_steps = [read_checkpoint(storage / "job" / name / "checkpoint.pth.tar")["step"] for name in registered]
    assert kept_steps and 2 <= min(kept_steps) and max(kept_steps) < 10
    run_id = json.loads((storage / "job" / "fomm_run.json").read_text())["mlflow_run_id"]

    second = _submit(jobs, [*train, "--resume", "--log-images-every", "1000"], env)  # a setting changed: see below
    _wait_for(lambda: jobs.get_job_status(second).is_terminal(), 600, "the resumed job did not finish", every=1)
    logs = jobs.get_job_logs(second)
    assert jobs.get_job_status(second) == JobStatus.SUCCEEDED, (jobs.get_job_info(second).message, logs[-4000:])
    assert re.search(r"^resumed from: (\S+)", logs, re.M).group(1) == str(storage / "job" / registered[-1])
    checkpoint = re.search(r"^checkpoint: (\S+)", logs, re.M).group(1)
    assert re.search(r"^mlflow run id: (\w+)", logs, re.M).group(1) == run_id  # the same MLflow run
    assert not re.search(r"^val_l1: ", logs, re.M)  # --val-clips 0: no score (was the ranking placeholder, 1e9)
    # a job's log is a file: Ray Data's bars in the workers' split coordinators came as redraws, each a line of
    # terminal codes (a cursor up: "\x1b[A"), 200 lines for 2 steps; they log their progress as plain lines now
    assert "\x1b[A" not in logs and "Total Progress" in logs, logs[-3000:]

    state = read_checkpoint(checkpoint)
    assert state["step"] == 10 and state["epoch"] == 1  # 6 steps per epoch: one done, 4 steps into the next
    adam = state["optimizer_kp_detector"]["state"]
    assert adam and {float(s["step"]) for s in adam.values()} == {10.0}  # moments restored, not restarted

    client = mlflow.MlflowClient(mlflow_server)
    assert client.get_run(run_id).info.status == "FINISHED"
    # MLflow never changes a param: the resumed run's new value is a tag (the run showed the first value only)
    run = client.get_run(run_id).data
    assert (run.params["job.log_images_every"], run.tags["fomm.changed_param.job.log_images_every"]) == ("0", "1000")
    restored = client.get_metric_history(run_id, "restored_from_step")
    assert restored and restored[-1].value == kept_steps[-1]  # the latest registered checkpoint
    totals = client.get_metric_history(run_id, "total")
    assert {m.step for m in totals} == set(range(1, 11))
    after = [m.step for m in totals if m.timestamp >= restored[-1].timestamp]
    assert after and min(after) > restored[-1].value  # the curve continues past the checkpoint, not from step 1

    # the checkpoint to resume from is cut off (a copy that died halfway): every restart would restore it again, so
    # --resume refuses it before Ray starts, in one line naming it (before: --max-failures restarts, then a
    # traceback, exit 1; then, from the workers, one line after Ray Train had started)
    Path(checkpoint).write_bytes(Path(checkpoint).read_bytes()[:100_000])
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # no cluster: it must not get as far as Ray
    third = subprocess.run([*train, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 2 and third.stdout == "", third.stderr[-3000:]
    assert third.stderr.startswith(f"train: error: {checkpoint}: not a readable checkpoint (truncated or corrupt?)")
    assert third.stderr.count("\n") == 1, third.stderr[-3000:]


@pytest.mark.ray
def test_ctrl_c_ends_the_run_killed_in_one_line(ray_head, mlflow_server, synthetic_shards, tiny_config_path,
                                                 tmp_path):
    """Ctrl-C while the workers train: exit 130, one line saying where the work is kept, the MLflow run KILLED. Ray
    Train's own SIGINT handler made it SystemExit(1): exit 1, nothing said, the run FAILED."""
    from services.tracking.queries import search_runs

    storage = tmp_path / "storage"
    cmd = [*as_a_shell_starts(TRAIN), "--config", str(tiny_config_path), "--data",
           str(synthetic_shards), "--storage", str(storage), "--name", "ctrl-c", "--epochs", "1000", "--val-clips", "0",
           "--log-images-every", "0", "--tracking-uri", mlflow_server, "--experiment", "train-ctrl-c", *SETTINGS]
    env = {**os.environ, "RAY_ADDRESS": ray_head["address"], "PYTHONPATH": str(TRAIN.parents[1]),
           "FOMM_TRACKING_END_WAIT_S": "30"}  # a slow store is not what this test waits for
    proc = subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:  # rank 0 tags the run's precision as it starts training
        _wait_for(lambda: proc.poll() is not None or any(
            "precision" in r["tags"] for r in search_runs(mlflow_server, "train-ctrl-c")), 300, "no worker trained")
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
        try:
            out, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:  # where it waits: SIGABRT makes faulthandler print every thread's stack
            proc.send_signal(signal.SIGABRT)
            out = proc.communicate(timeout=60)[0]
            raise AssertionError(f"no exit 180 s after Ctrl-C; {out[:200]}\n{out[-8000:]}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-3000:]
    assert last_line(out) == (f"train: interrupted (work done so far is kept in {storage / 'ctrl-c'}: rerun the "
                              "same command with --resume to go on from its last checkpoint)"), out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert [r["status"] for r in search_runs(mlflow_server, "train-ctrl-c")] == ["KILLED"]
