"""A sweep (`pipelines/tune.py`) ended from outside while a trial trains: by Ctrl-C (exit 130, the parent run and the
trial's run end KILLED; nothing is left RUNNING), or by its storage's disk filling up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import as_a_shell_starts, fill_disk, last_line

REPO = Path(__file__).resolve().parents[2]


def _wait_trial_training(uri: str, experiment: str, proc: subprocess.Popen, timeout: float) -> None:
    from services.tracking.queries import search_runs

    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        runs = search_runs(uri, experiment)
        if any(r["run_name"].startswith("trial-") and "precision" in r["tags"] for r in runs):
            return
        time.sleep(0.5)
    raise TimeoutError(f"no trial started training within {timeout:.0f}s")


@pytest.mark.ray
def test_ctrl_c_ends_the_sweep_and_its_trials_killed(ray_head, mlflow_server, synthetic_shards, tmp_path,
                                                     tiny_config_path):
    from services.tracking.queries import search_runs

    space = tmp_path / "space.yaml"
    space.write_text("metric: val_l1\nmode: min\nnum_samples: 1\n"
                     "space:\n  train_params.loss_weights.equivariance_value:\n    grid: [1, 10]\n")
    cmd = [*as_a_shell_starts(REPO / "pipelines" / "tune.py"), "--config", str(tiny_config_path), "--space",
           str(space), "--data", str(synthetic_shards), "--storage", str(tmp_path / "runs"), "--epochs", "1000",
           "--val-clips", "1", "--tracking-uri", mlflow_server, "--experiment", "sweep-ctrl-c"]
    env = {**os.environ, "RAY_ADDRESS": ray_head["address"], "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_trial_training(mlflow_server, "sweep-ctrl-c", proc, timeout=300)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    # an unfinished sweep is no success: exit 130, one line saying where its state is kept, no best config
    assert proc.returncode == 130, out[-3000:]
    assert last_line(out) == (
        f"tune: interrupted (work done so far is kept in {tmp_path / 'runs' / 'sweep-tiny-64'}: rerun the same "
        "command with --resume to restore the sweep)"), out[-3000:]
    assert "Traceback" not in out and not (tmp_path / "runs" / "sweep-tiny-64" / "best.yaml").exists(), out[-3000:]
    runs = {r["run_name"]: r for r in search_runs(mlflow_server, "sweep-ctrl-c")}
    assert [n for n, r in runs.items() if r["status"] == "RUNNING"] == [], out[-3000:]
    parent = runs["sweep-tiny-64"]
    trials = [r for r in runs.values() if r["tags"].get("mlflow.parentRunId") == parent["run_id"]]
    assert parent["status"] == "KILLED" and trials and {r["status"] for r in trials} == {"KILLED"}, out[-3000:]


def _fill_once_a_checkpoint_appears(disk: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if any(disk.glob("*/trials/*/checkpoint_*")):
            fill_disk(disk)
            return
        time.sleep(0.2)


@pytest.mark.ray
def test_a_full_disk_ends_the_sweep_at_its_first_trial_in_one_line(ray_head, mlflow_server, synthetic_shards,
                                                                   tmp_path, tiny_config_path):
    """The storage's disk fills once a trial has kept a checkpoint: its next write fails. Every trial would fail
    alike, so the sweep stops there (no retry, no second trial) with one line and no traceback on the console."""
    from services.tracking.queries import search_runs
    from tests.conftest import tmpfs

    space = tmp_path / "space.yaml"
    space.write_text("metric: val_l1\nmode: min\nnum_samples: 1\n"
                     "space:\n  train_params.loss_weights.equivariance_value:\n    grid: [1, 10]\n")
    with tmpfs(tmp_path / "disk", "24m") as disk:
        cmd = [sys.executable, str(REPO / "pipelines" / "tune.py"), "--config", str(tiny_config_path), "--space",
               str(space), "--data", str(synthetic_shards), "--storage", str(disk), "--epochs", "1000",
               "--val-clips", "1", "--tracking-uri", mlflow_server, "--experiment", "sweep-full-disk"]
        env = {**os.environ, "RAY_ADDRESS": ray_head["address"], "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            _fill_once_a_checkpoint_appears(disk, proc, timeout=300)
            out, _ = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 2, out[-3000:]
    assert last_line(out).startswith("tune: error: no space left on the device"), out[-3000:]
    assert "Traceback" not in out, out[max(0, out.find("Traceback") - 1500):][:4000]
    runs = {r["run_name"]: r for r in search_runs(mlflow_server, "sweep-full-disk")}
    trials = [r for name, r in runs.items() if name.startswith("trial-")]
    assert runs["sweep-tiny-64"]["status"] == "FAILED" and len(trials) == 1, out[-3000:]
