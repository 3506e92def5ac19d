"""`pipelines/train.py --model-name` on Ray Train while its MLflow server is killed mid-run and started again (same
port, same store): the run finishes with every step's metrics in MLflow, its best checkpoint becomes a version of
the registered model, and `pipelines/benchmark.py --model-name` evaluates that version. One training run serves
both stories: a Ray Train run costs ~20 s of actor start-up on 2 cores whatever its steps."""

from __future__ import annotations

import filecmp
import math
import re
import signal
import threading
import time
from pathlib import Path

import mlflow
import pytest

from fomm.checkpoint import read_checkpoint
from preprocessing.synthetic import write_synthetic_shards
from services.tracking.queries import search_runs
from services.tracking.registry import download_model_version, latest_model_version
from services.tracking.store import make_client
from tests.conftest import run_artifacts
from tests.evaluation.test_benchmark import load_pipeline
from training.job import TrainJob

STEPS = 8
SETTINGS = ["dataset_params.frame_shape=[32,32,3]", "train_params.num_repeats=2", "train_params.scales=[1]",
            "train_params.checkpoint_every_steps=4"]


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
def test_training_survives_a_tracking_server_restart_and_registers_what_the_benchmark_evaluates(
        ray_local, mlflow_restartable, synthetic_shards, tiny_config_path, repo_root, tmp_path, wait_registered,
        capsys):
    server, name = mlflow_restartable, f"registry-{tmp_path.name}"
    storage = tmp_path / "runs"
    job = TrainJob(config=str(tiny_config_path), data=str(synthetic_shards), storage=str(storage), name="blink")
    outage: dict = {}

    def blink() -> None:  # the server goes before the first step and comes back after the step-4 checkpoint
        try:
            outage["run_id"] = _wait_worker_started(mlflow.MlflowClient(server.uri), "outage", timeout=400)
            server.stop(signal.SIGKILL)
            outage["down_at"] = time.time()
            wait_registered(job, timeout=400)  # half the run trained while the store was gone
            server.start()
            outage["up_at"] = time.time()
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outage["error"] = err

    thread = threading.Thread(target=blink, daemon=True)
    thread.start()
    train = load_pipeline(repo_root, "train")
    code = train.main(["--config", str(tiny_config_path), "--data", str(synthetic_shards), "--storage", str(storage),
                       "--name", "blink", "--max-steps", str(STEPS), "--epochs", "100", "--val-clips", "0",
                       "--log-images-every", "2", "--tracking-uri", server.uri, "--experiment", "outage",
                       "--model-name", name, *[a for s in SETTINGS for a in ("--set", s)]])
    thread.join(timeout=60)
    out = capsys.readouterr().out
    assert "error" not in outage, outage.get("error")
    assert code == 0, out
    run_id = re.search(r"^mlflow run id: (\w+)$", out, re.M).group(1)
    checkpoint = re.search(r"^checkpoint: (\S+)$", out, re.M).group(1)
    best = Path(re.search(r"^best checkpoint: (\S+)$", out, re.M).group(1))
    assert run_id == outage["run_id"] and read_checkpoint(checkpoint)["step"] == STEPS

    # every step's metrics arrived, those of steps 1-4 (buffered) while the server was down
    client = mlflow.MlflowClient(server.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["last_step"] == str(STEPS)
    assert run.data.tags["checkpoint_path"] == checkpoint
    for key in ("total", "perceptual", "lr_generator", "samples_per_s"):
        history = client.get_metric_history(run_id, key)
        assert sorted({m.step for m in history}) == list(range(1, STEPS + 1)), key
    logged_at = sorted(m.timestamp / 1000 for m in client.get_metric_history(run_id, "total"))
    assert outage["down_at"] < logged_at[3] < outage["up_at"]

    # the best checkpoint is version 1 of the registered model: its original-format file, its step as a tag
    assert f"registered model: {name} version 1" in out, out
    version = latest_model_version(server.uri, name)
    assert version["version"] == 1 and version["run_id"] == run_id and version["source"] == f"runs:/{run_id}/model"
    # the MLflow UI's Models column lists the versions that a model-version search by run id finds
    assert [int(v.version) for v in make_client(server.uri).search_model_versions(f"run_id IN ('{run_id}')")] == [1]
    assert version["tags"]["checkpoint_path"] == str(best) and version["tags"]["final.step"] == str(STEPS)
    assert version["tags"]["step"] == str(read_checkpoint(best)["step"])  # the version says which step it is
    assert {"model/checkpoint.pth.tar", "model/config.yaml"} <= set(run_artifacts(server.uri, run_id,
                                                                                  tmp_path / "artifacts"))
    files = download_model_version(server.uri, name, 1, tmp_path / "dl")
    assert filecmp.cmp(files / "checkpoint.pth.tar", best, shallow=False)  # the original-format file itself
    assert set(read_checkpoint(files / "checkpoint.pth.tar")) >= {"generator", "kp_detector"}  # weights_only load

    bench = load_pipeline(repo_root, "benchmark")
    data = write_synthetic_shards(tmp_path / "bench", num_videos=2, num_frames=6, seed=5)
    assert bench.main(["--model-name", name, "--config", str(tiny_config_path), "--data", str(data),
                       "--tracking-uri", server.uri, "--experiment", f"bench-{name}", "--workers", "0",
                       "--domain", "synthetic", "--out", str(tmp_path / "out"), "--metrics", "l1",
                       "--run-name", "registered"]) == 0
    assert "baseline: none" in capsys.readouterr().out
    [bench_run] = search_runs(server.uri, f"bench-{name}")
    assert bench_run["tags"]["benchmark.model_name"] == name and bench_run["tags"]["benchmark.model_version"] == "1"
    assert bench_run["status"] == "FINISHED" and math.isfinite(bench_run["metrics"]["l1"])
