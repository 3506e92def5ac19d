"""A Ray Train run whose MLflow server is killed mid-run and started again (same port, same store): the run
finishes, and every step's metrics are in MLflow afterwards."""

from __future__ import annotations

import signal
import threading
import time

import mlflow
import pytest

from training.job import TrainJob
from training.trainer import fit

STEPS = 8


def _wait_worker_started(client: mlflow.MlflowClient, experiment: str, timeout: float) -> str:
    """The run id once rank 0 has tagged its precision: the worker is up and about to train."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if runs and "precision" in runs[0].data.tags:
            return runs[0].info.run_id
        time.sleep(0.2)
    raise TimeoutError(f"no training worker started within {timeout:.0f}s")


@pytest.mark.ray
def test_training_survives_a_tracking_server_restart_and_loses_no_step(ray_local, mlflow_restartable,
                                                                       synthetic_shards, tiny_config_path, tmp_path,
                                                                       wait_registered):
    server = mlflow_restartable
    job = TrainJob(config=str(tiny_config_path), data=str(synthetic_shards), storage=str(tmp_path / "runs"),
                   max_steps=STEPS, num_epochs=100, tracking_uri=server.uri, experiment="outage", name="blink",
                   num_val_clips=0, log_images_every=2, validate_at_start=False,
                   overrides={"dataset_params": {"frame_shape": [32, 32, 3]},
                              "train_params": {"num_repeats": 2, "scales": [1], "checkpoint_every_steps": 4}})
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = fit(job)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    run_id = _wait_worker_started(mlflow.MlflowClient(server.uri), "outage", timeout=400)
    server.stop(signal.SIGKILL)  # before the first step: every step is trained while the store is gone
    down_at = time.time()
    wait_registered(job, timeout=400)  # the step-4 checkpoint: half the run trained while the store was gone
    server.start()
    up_at = time.time()
    thread.join(timeout=500)
    assert not thread.is_alive(), "training did not finish after the tracking server came back"
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.mlflow_run_id == run_id and result.metrics["step"] == STEPS

    client = mlflow.MlflowClient(server.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["last_step"] == str(STEPS)
    assert run.data.tags["checkpoint_path"] == result.checkpoint
    for key in ("total", "perceptual", "lr_generator", "samples_per_s"):
        history = client.get_metric_history(run_id, key)
        assert sorted({m.step for m in history}) == list(range(1, STEPS + 1)), key
    logged_at = sorted(m.timestamp / 1000 for m in client.get_metric_history(run_id, "total"))
    assert down_at < logged_at[3] < up_at  # steps 1-4 were logged (buffered) while the server was down
