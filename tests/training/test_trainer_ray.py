"""Two-worker DDP training on Ray Train (CPU, gloo) from and to S3, with the node of one worker lost mid-run."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest
import ray.train

from fomm.checkpoint import load_checkpoint, read_checkpoint
from fomm.discriminator import MultiScaleDiscriminator
from fomm.generator import OcclusionAwareGenerator
from fomm.keypoint_detector import KPDetector
from services import storage
from services.failures import user_error_line
from training.job import TrainJob
from training.trainer import fit

# 32×32 frames, 2 pyramid scales and the two VGG slices that random features use: fast on 2 cores
SMALL = {"dataset_params": {"frame_shape": [32, 32, 3]},
         "train_params": {"num_repeats": 2, "batch_size": 2, "scales": [1, 0.5], "checkpoint_every_steps": 2,
                          "loss_weights": {"perceptual": [10, 10, 0, 0, 0]}}}


def small_job(config: Path, data: str, storage_path: str, tracking_uri: str, **changes) -> TrainJob:
    return TrainJob(config=str(config), data=data, storage=storage_path, workers=2, max_steps=8,
                    tracking_uri=tracking_uri, num_val_clips=2, val_frames=3, log_images_every=4, overrides=SMALL,
                    **changes)


def _train_workers(dashboard: str, timeout: float) -> list[tuple[int, str]]:
    """(PID, node id) of the live RayTrainWorker actors, once the worker group is up."""
    from ray.util.state import list_actors

    deadline = time.time() + timeout
    while time.time() < deadline:
        workers = list_actors(address=dashboard, filters=[("class_name", "=", "RayTrainWorker"),
                                                          ("state", "=", "ALIVE")], detail=True)
        if len(workers) == 2:
            return [(int(w.pid), w.node_id) for w in workers]
        time.sleep(0.5)
    raise TimeoutError(f"no 2 live train workers within {timeout:.0f}s")


def upload(local: Path, remote: str) -> str:
    for path in sorted(local.glob("*.parquet")):
        storage.write_bytes(storage.join(remote, path.name), path.read_bytes())
    return remote


@pytest.mark.ray
def test_two_worker_ddp_run_on_s3_survives_a_lost_node(ray_local, moto_s3, synthetic_shards,
                                                                 tiny_config_path, tmp_path, wait_registered,
                                                                 sqlite_uri):
    """Shards and checkpoints on S3 (moto); the two workers on two nodes (SPREAD); after the first checkpoint the
    node of one of them is lost whole (its raylet, agents and workers SIGKILLed) and a replacement node starts, as
    an autoscaler would: Ray Train restores the worker group from the checkpoint and the run ends FINISHED, with
    every step logged once and the restart counted."""
    bucket = f"s3://{moto_s3['bucket']}/{tmp_path.name}"
    data = upload(synthetic_shards, f"{bucket}/shards")
    uri = sqlite_uri  # the session's store: this test reads its own run by id
    job = small_job(tiny_config_path, data, f"{bucket}/storage", uri, name="ddp", placement="SPREAD")
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = fit(job)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    workers = _train_workers(ray_local["dashboard"], timeout=400)  # found early: the kill must land mid-run
    assert len({node for _, node in workers}) == 2, workers  # SPREAD: one DDP worker on each worker node
    wait_registered(job, timeout=400)
    cluster = ray_local["cluster"]
    lost = next(name for name, node in cluster.node_ids().items() if node == workers[-1][1])
    cluster.kill_worker(lost)
    killed_at = time.time()
    cluster.replace_worker(lost)  # its replacement joins at once, as an autoscaler's would (new node id, new ports)
    thread.join(timeout=500)
    finished_at = time.time()
    assert not thread.is_alive(), "training did not finish after a worker was killed"
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.checkpoint.startswith(f"{bucket}/storage/ddp/checkpoint_")

    # the two workers hold identical weights (checked across workers after the last step)
    assert result.metrics["world_size"] == 2 and result.metrics["weights_max_diff"] == 0.0
    # the checkpoint is in the original format and loads into the model built from the config
    cfg = job.load_config()
    kp, gen = KPDetector.from_config(cfg.model_params), OcclusionAwareGenerator.from_config(cfg.model_params)
    disc = MultiScaleDiscriminator.from_config(cfg.model_params)
    local = tmp_path / "checkpoint.pth.tar"
    local.write_bytes(storage.read_bytes(result.checkpoint))
    load_checkpoint(local, generator=gen, kp_detector=kp, discriminator=disc)
    assert read_checkpoint(local)["step"] == 8

    client = mlflow.MlflowClient(uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["checkpoint_path"] == result.checkpoint
    assert run.data.tags["precision"] == "fp32"  # tiny-64: bf16 false
    totals = client.get_metric_history(result.mlflow_run_id, "total")
    assert sorted(m.step for m in totals) == list(range(1, 9))  # none lost, none logged twice
    assert all(math.isfinite(m.value) for m in totals)
    for key in ("perceptual", "equivariance_value", "equivariance_jacobian", "lr_generator", "samples_per_s",
                "val_l1", "val_l1_copy_source"):
        assert key in run.data.metrics, key
    restored = client.get_metric_history(result.mlflow_run_id, "restored_from_step")
    last_step_at = max(m.timestamp for m in totals) / 1000
    assert restored and restored[0].value >= 2, (
        f"no restore logged (node killed {killed_at - last_step_at:+.1f}s after the last step was logged)")
    assert [m.value for m in client.get_metric_history(result.mlflow_run_id, "restarts")][-1] >= 1
    print(f"node loss in training: restored from step {restored[0].value:.0f} "
          f"{restored[0].timestamp / 1000 - killed_at:.1f}s after the kill; run finished {finished_at - killed_at:.1f}s "
          f"after it")
    artifacts = [a.path for a in client.list_artifacts(result.mlflow_run_id, "images/train")]
    assert artifacts and all(a.endswith(".png") for a in artifacts)
    assert float(run.data.params["fomm.train_params.batch_size"]) == 2


@pytest.mark.ray
def test_a_node_lost_and_not_replaced_ends_the_run_in_one_line_instead_of_waiting_forever(
        ray_local, synthetic_shards, tiny_config_path, tmp_path, sqlite_uri, monkeypatch):
    """One DDP worker's node SIGKILLed, no replacement: Ray Train restarts both workers on the other node, whose 2
    CPUs leave none for the data pipeline, and the run waited forever (by hand: still waiting 8 minutes later). It
    ends once the cluster has been short of the CPUs the run needs for $FOMM_ROOM_WAIT_S."""
    monkeypatch.setenv("FOMM_ROOM_WAIT_S", "5")
    cluster = ray_local["cluster"]
    job = dataclasses.replace(small_job(tiny_config_path, str(synthetic_shards), str(tmp_path / "storage"),
                                        sqlite_uri, name="short", placement="SPREAD"),
                              max_steps=None, num_epochs=1000, num_val_clips=0, log_images_every=0)
    lost: list[str] = []

    def lose_a_node() -> None:
        node = _train_workers(ray_local["dashboard"], 300)[0][1]
        lost.extend(name for name, node_id in cluster.node_ids().items() if node_id == node)
        cluster.kill_worker(lost[0])

    killer = threading.Thread(target=lose_a_node, daemon=True)
    killer.start()
    try:
        with pytest.raises(ray.train.ControllerError) as raised:
            fit(job)
    finally:
        killer.join(timeout=60)
        for name in lost:
            cluster.replace_worker(name)
    assert lost, "no training worker was found to lose its node"
    line = ("the Ray cluster has had 2 CPUs for 5 s (a node lost?); the run needs 4 (2 worker(s) × 1 and 2 for its "
            "data) and would wait forever ($FOMM_ROOM_WAIT_S sets how long it waits for room)")
    assert user_error_line(raised.value) == line
    run = mlflow.MlflowClient(sqlite_uri).search_runs(
        [mlflow.MlflowClient(sqlite_uri).get_experiment_by_name(job.experiment).experiment_id],
        filter_string="attributes.run_name = 'short'")[0]
    assert (run.info.status, run.data.tags["fomm.end_reason"]) == ("FAILED", line)


@pytest.mark.ray
def test_workers_that_cannot_start_again_end_the_run_in_one_line_instead_of_retrying_forever(ray_local,
                                                                                             tiny_config_path):
    """A node lost where the workers then no longer fit (a GPU node, or CPUs another job holds): Ray Train retries
    starting them forever, each failed start followed by its RESCHEDULING state (by hand: a 1 × 2-CPU run whose
    node was killed while another job held the other node's CPUs, still retrying 10 minutes later). Once that has
    lasted $FOMM_ROOM_WAIT_S, the next one ends the run; a group that ran in between starts the wait again."""
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError
    from ray.train.v2._internal.execution.controller.state import ReschedulingState, RunningState

    from training.trainer import StopWhereTheClusterCannotFeedTheRun

    job = dataclasses.replace(small_job(tiny_config_path, "data", "storage", "sqlite:///unused.db"),
                              gpus_per_worker=1, cpus_per_worker=1.5)
    failed_start = ReschedulingState(ray.train.ControllerError(WorkerGroupStartupTimeoutError(2)))
    stop = StopWhereTheClusterCannotFeedTheRun(job, wait_s=0.3)
    stop.after_controller_state_update(RunningState(), failed_start)  # the first: the wait starts
    time.sleep(0.3)
    stop.after_controller_state_update(failed_start, RunningState())  # any other state: nothing to judge
    stop.after_worker_group_poll_status(None)  # the group ran: the wait starts again
    stop.after_controller_state_update(RunningState(), failed_start)
    time.sleep(0.3)
    with pytest.raises(ray.train.ControllerError) as raised:
        stop.after_controller_state_update(RunningState(), failed_start)
    assert user_error_line(raised.value) == (
        "Ray Train could not start the run's 2 worker(s) (1.5 CPU, 1 GPU each) for 0.3 s (a node lost?); the Ray "
        "cluster has 4 CPUs and 0 GPUs, and it would retry forever ($FOMM_ROOM_WAIT_S sets how long it waits for "
        "room)")


@pytest.mark.ray
def test_an_epoch_without_a_single_batch_is_an_error_not_an_endless_budget_run(
        ray_local, synthetic_shards, tiny_config_path, tmp_path, sqlite_uri):
    """Every training frame undecodable: the pairs are all dropped, so no batch ever comes (the epoch count would
    not stop a budget schedule). A bad input, so no restart would mend it: the run ends at once, in one line."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    data_dir = tmp_path / "damaged"
    shutil.copytree(synthetic_shards, data_dir)
    train = data_dir / "train-00000.parquet"
    table = pq.read_table(train)
    frames = pa.array([[b"not an image"] * len(f) for f in table.column("frames").to_pylist()],
                      type=table.schema.field("frames").type)
    pq.write_table(table.set_column(table.schema.get_field_index("frames"), "frames", frames), train)
    job = dataclasses.replace(small_job(tiny_config_path, str(data_dir), str(tmp_path / "storage"), sqlite_uri,
                                        name="empty", lr_schedule="budget"),
                              workers=1, max_failures=0, validate_at_start=False)
    with pytest.raises(ray.train.ControllerError) as raised:  # a user error: ended, not retried (max_failures 2)
        fit(dataclasses.replace(job, max_failures=2))
    assert user_error_line(raised.value) == (f"{data_dir}: an epoch gave worker 0 no full batch of 2 training pairs "
                                             "(are its frames decodable?)")


@pytest.mark.ray
def test_a_run_whose_loss_turns_nan_fails_at_that_step_and_keeps_no_checkpoint_of_it(
        ray_local, synthetic_shards, tiny_config_path, tmp_path, sqlite_uri):
    """Learning rates of 1e30: step 1's update leaves weights that make step 2's losses NaN. The two DDP workers
    agree on it (an all-reduce) and both stop after that step; the run fails with one line naming the step, its
    MLflow run is FAILED and says why, and no checkpoint holds the NaN weights (before: a FINISHED run)."""
    from training.job import registered_checkpoints
    from training.trainer import TrainingDiverged

    lrs = {f"lr_{net}": 1e30 for net in ("generator", "kp_detector", "discriminator")}
    job = dataclasses.replace(small_job(tiny_config_path, str(synthetic_shards), str(tmp_path / "storage"),
                                        sqlite_uri, name="nan"),
                              num_val_clips=0, log_images_every=0, validate_at_start=False, max_failures=0,
                              overrides={**SMALL, "train_params": {**SMALL["train_params"], **lrs}})
    with pytest.raises(TrainingDiverged, match=r"/nan: training diverged at step 2 \(a loss became NaN or inf\)"
                                               r".* before it \(none was taken\)$"):
        fit(job)
    assert registered_checkpoints(job) == [] and not list((tmp_path / "storage" / "nan").glob("checkpoint_*"))
    client = mlflow.MlflowClient(sqlite_uri)
    [run] = client.search_runs([client.get_experiment_by_name(job.experiment).experiment_id],
                               filter_string="attributes.run_name = 'nan'")
    assert run.info.status == "FAILED" and "training diverged at step 2" in run.data.tags["fomm.end_reason"]
    totals = client.get_metric_history(run.info.run_id, "total")
    assert [m.step for m in totals] == [1, 2] and math.isfinite(totals[0].value) and math.isnan(totals[1].value)


@pytest.mark.ray
def test_a_new_run_starts_from_the_networks_of_the_checkpoint_init_from_names(
        ray_local, synthetic_shards, tiny_config_path, tmp_path, sqlite_uri, monkeypatch, capsys):
    """--init-from (fine-tuning, e.g. the released vox-cpk.pth.tar on one's own clips), a path relative to where
    the command runs (each worker runs in a folder of its own): with every learning rate 0 the run's checkpoint
    after its one step holds that checkpoint's parameters, at step 1 of epoch 0 (not the file's epoch 99, nor its
    optimisers). A checkpoint of another model is refused before Ray, naming the file; one whose discriminator is
    of another GAN setting (vox-cpk under vox-adv-256.yaml) is taken without it, and a note says so."""
    import torch

    from fomm.checkpoint import CheckpointError, checkpoint_bytes
    from fomm.config.schema import load_config
    from fomm.models import build_networks
    from training.job_checks import check_inputs

    nets = build_networks(load_config(tiny_config_path).model_params, discriminator=True, seed=7)
    source = tmp_path / "vox-cpk.pth.tar"
    source.write_bytes(checkpoint_bytes(epoch=99, **vars(nets)))
    monkeypatch.chdir(tmp_path)
    lrs = {f"lr_{net}": 0 for net in ("generator", "kp_detector", "discriminator")}
    job = dataclasses.replace(small_job(tiny_config_path, str(synthetic_shards), str(tmp_path / "storage"),
                                        sqlite_uri, name="tuned"),
                              workers=1, max_steps=1, num_val_clips=0, log_images_every=0, validate_at_start=False,
                              init_from=source.name, overrides={**SMALL, "train_params": {**SMALL["train_params"], **lrs}})
    other_model = dataclasses.replace(job, overrides={**job.overrides, "model_params": {"common_params": {"num_kp": 4}}})
    with pytest.raises(CheckpointError, match=r"vox-cpk\.pth\.tar: 'generator' does not fit the model config"):
        check_inputs(other_model)
    other_gan = dataclasses.replace(job, overrides={
        **job.overrides, "model_params": {"discriminator_params": {"use_kp": True}}})
    capsys.readouterr()
    check_inputs(other_gan)
    note = capsys.readouterr().out  # on stdout: on stderr it was a second line before an error's
    assert "'discriminator' does not fit the model config" in note
    assert "the discriminator starts from random weights" in note
    check_inputs(job)
    saved = read_checkpoint(fit(job).checkpoint)
    assert (saved["step"], saved["epoch"]) == (1, 0)
    for name, net in vars(nets).items():  # parameters: batch norm's running statistics moved with the step
        assert all(torch.equal(saved[name][key], p) for key, p in net.named_parameters()), name


FULL_STORAGE_DRIVER = """
import dataclasses, json, sys
import ray.train
from services.cli import run_cli
from training.job import TrainJob
from training.trainer import ensure_training_ray, fit_plan, plan_run

class FillsTheDisk(ray.train.UserCallback):  # once the first checkpoint is kept, the storage's disk fills up
    def __init__(self, disk):
        self.disk = disk

    def after_report(self, run_context, metrics, checkpoint):
        if checkpoint is not None:
            try:
                with open(self.disk + "/filler", "ab") as f:
                    while True:
                        f.write(bytes(65536)); f.flush()
            except OSError:
                pass

def main(argv):
    job = TrainJob(**json.loads(argv[0]))
    ensure_training_ray(job)
    fit_plan(plan_run(job), callbacks=[FillsTheDisk(job.storage)])

sys.exit(run_cli(main, sys.argv[1:], "prog"))
"""


@pytest.mark.ray
def test_a_full_storage_disk_ends_the_run_at_once_in_one_line(ray_head, synthetic_shards, tiny_config_path, tmp_path,
                                                               sqlite_uri):
    """The storage's disk fills after the first checkpoint: the next checkpoint's write fails, and the run ends
    there (a restart from the checkpoint would meet the same full disk, --max-failures times) with one line and no
    traceback on the console, Ray Train's worker and controller lines included. A driver of its own, as a user
    runs one, on the tests' cluster."""
    from tests.conftest import tmpfs

    with tmpfs(tmp_path / "disk", "24m") as disk:
        job = dataclasses.replace(small_job(tiny_config_path, str(synthetic_shards), str(disk), sqlite_uri,
                                            name="full"),
                                  workers=1, max_steps=6, num_val_clips=0, log_images_every=0, max_failures=2,
                                  validate_at_start=False, experiment="full-storage")
        env = {**os.environ, "RAY_ADDRESS": ray_head["address"], "PYTHONPATH": str(Path(__file__).parents[2])}
        done = subprocess.run([sys.executable, "-c", FULL_STORAGE_DRIVER, json.dumps(dataclasses.asdict(job))],
                              env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.splitlines()[-1] == "prog: error: no space left on the device", done.stderr[-3000:]
    output = done.stderr + done.stdout
    assert "Traceback" not in output, output[max(0, output.find("Traceback") - 1500):][:4000]
    assert "Error in training function: OSError: [Errno 28]" in done.stderr + done.stdout  # the worker's, one line
    client = mlflow.MlflowClient(sqlite_uri)
    [run] = client.search_runs([client.get_experiment_by_name("full-storage").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["fomm.end_reason"] == "no space left on the device"
    assert "restored_from_step" not in run.data.metrics  # no worker group was restarted from the checkpoint
