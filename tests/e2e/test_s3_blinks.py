"""S3 answering 503 SlowDown for a while (a loopback proxy in front of moto), during preprocessing and during
checkpointing: botocore's own retries with backoff carry the jobs through, counted; shards and checkpoints come
out whole."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from fomm.checkpoint import read_checkpoint
from preprocessing.synthetic import generate_synthetic_videos
from services import s3_retries, storage
from tests.conftest import damaged_shards, shard_clips
from tests.flaky_s3 import FlakyS3Proxy

pytestmark = pytest.mark.ray
WINDOW_S = 3.0  # every request in these seconds fails; 10 attempts with backoff span more than that


def _writes_under(prefix: str):  # noqa: ANN202 - a trigger(method, path)
    return lambda method, path: method in ("PUT", "POST") and prefix in path


@pytest.fixture
def blinking_s3(moto_s3) -> Iterator[dict]:
    proxies: list[FlakyS3Proxy] = []

    def start(trigger, seconds: float = WINDOW_S, count: int | None = None) -> FlakyS3Proxy:  # noqa: ANN001
        proxies.append(FlakyS3Proxy(moto_s3["endpoint"], trigger, seconds, count))
        return proxies[-1]

    yield {**moto_s3, "start": start}
    for proxy in proxies:
        proxy.close()


def test_a_pickled_filesystem_keeps_retrying_and_counts_every_retry(blinking_s3, tmp_path):
    """What a Ray worker receives (a pickled filesystem: endpoint and retry settings, no keys) rides out 3 failed
    attempts in a row, which botocore's default 3 would not, and each 503 it was answered is counted as one retry.
    The storm is counted, not timed: in a 3 s window a loaded machine's third attempt came after it (2 failures)."""
    import pickle

    proxy = blinking_s3["start"](_writes_under(f"/{tmp_path.name}/"), count=3)
    fs, path = storage.resolve(f"s3://{blinking_s3['bucket']}/{tmp_path.name}/blob.bin", proxy.endpoint)
    worker_fs = pickle.loads(pickle.dumps(fs))
    data = bytes(range(256)) * 4096  # 1 MiB
    with s3_retries.counting_retries() as retries:
        storage.write_bytes(path, data, fs=worker_fs)
    assert proxy.failed == 3  # every attempt botocore's default (3) makes would have failed
    assert retries.count == proxy.failed  # one retry per injected failure, none missed
    assert storage.read_bytes(f"s3://{blinking_s3['bucket']}/{tmp_path.name}/blob.bin") == data


def test_preprocessing_writes_its_shards_whole_through_a_503_storm(blinking_s3, ray_local, tmp_path):
    import boto3

    from preprocessing.config import PreprocessConfig
    from preprocessing.ray_jobs import run_preprocess

    bucket, prefix = blinking_s3["bucket"], tmp_path.name
    videos = generate_synthetic_videos(tmp_path / "raw", num_videos=3, size=64, num_frames=24, seed=1)
    s3 = boto3.client("s3", endpoint_url=blinking_s3["endpoint"], region_name="us-east-1")
    for path in sorted((tmp_path / "raw").iterdir()):
        s3.upload_file(str(path), bucket, f"{prefix}/raw/{path.name}")
    proxy = blinking_s3["start"](_writes_under(f"/{prefix}/ds/"))
    cfg = PreprocessConfig(input=f"s3://{bucket}/{prefix}/raw", output=f"s3://{bucket}/{prefix}/ds", kind="none",
                           size=32, min_frames=8, workers=2, endpoint=proxy.endpoint)
    result = run_preprocess(cfg)

    assert proxy.failed > 0 and proxy.window is not None, "the storm never hit the job"
    assert (result["num_clips"], result["num_errors"]) == (3, 0), videos
    # retries counted in the driver and in the Ray workers, summed in the job's summary: every injected
    # failure was retried (none gave up), and nothing else was
    assert result["s3_retries"] == proxy.failed
    out = f"s3://{bucket}/{prefix}/ds"  # read back straight from moto, not through the proxy
    assert damaged_shards(out) == []
    clips = list(shard_clips(out))
    assert sorted(c["video_id"] for c in clips) == ["synth0000", "synth0001", "synth0002"]
    assert all(c["frames"].shape == (24, 32, 32, 3) for c in clips)


def test_a_budget_run_on_s3_decays_on_schedule_and_checkpoints_whole_through_a_503_storm(
        blinking_s3, ray_local, synthetic_shards, tiny_config_path, tmp_path, sqlite_uri):
    """One worker, shards and checkpoints on S3 behind a proxy that answers 503 to every request for 3 s from the
    first checkpoint upload: botocore's retries carry the uploads through, counted, and every registered
    checkpoint is whole. The schedule: 6 training clips × num_repeats 1 / batch 2 make 3 steps per epoch;
    num_epochs 2 with a milestone after epoch 1 puts the decay at half the budget (step 4 of 8), where the epoch
    schedule would decay after step 3 and stop at 6. Batch norm freezes at the same point (freeze_batch_norm_epoch
    1). The run trains in bf16 autocast (emulated where the CPU lacks bf16) and logs image grids from its
    outputs."""
    import json

    import mlflow

    from tests.training.test_trainer_ray import SMALL, small_job, upload
    from training.job import CHECKPOINT_FILE, registered_checkpoints
    from training.trainer import fit

    bucket = f"s3://{blinking_s3['bucket']}/{tmp_path.name}"
    data = upload(synthetic_shards, f"{bucket}/shards")
    proxy = blinking_s3["start"](_writes_under("/checkpoint_"))  # the first checkpoint upload opens the window
    overrides = {**SMALL, "train_params": {**SMALL["train_params"], "num_repeats": 1, "epoch_milestones": [1],
                                           "checkpoint_every_steps": 4, "freeze_batch_norm_epoch": 1, "bf16": True}}
    job = dataclasses.replace(small_job(tiny_config_path, data, f"{bucket}/runs", sqlite_uri, name="budget",
                                        num_epochs=2, lr_schedule="budget"),
                              workers=1, log_images_every=4, overrides=overrides, endpoint=proxy.endpoint)
    result = fit(job)

    client = mlflow.MlflowClient(sqlite_uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["precision"] == "bf16"
    grids = [a.path for a in client.list_artifacts(result.mlflow_run_id, "images/train")]
    assert len(grids) == 2 and all(g.endswith(".png") for g in grids)  # steps 4 and 8
    base = job.load_config().train_params.lr_generator
    lrs = sorted((m.step, m.value) for m in client.get_metric_history(result.mlflow_run_id, "lr_generator"))
    assert [s for s, _ in lrs] == list(range(1, 9))
    assert [v for _, v in lrs] == pytest.approx([base] * 4 + [0.1 * base] * 4)
    frozen = client.get_metric_history(result.mlflow_run_id, "batch_norm_frozen")
    assert [m.value for m in sorted(frozen, key=lambda m: m.step)] == [0.0] * 4 + [1.0] * 4
    assert result.metrics["step"] == 8 and result.metrics["epoch"] == 2  # 8 steps of 3: past num_epochs' 6
    state = json.loads(storage.read_bytes(result.checkpoint.rsplit("/", 1)[0] + "/train_state.json"))
    assert state["budget_fraction"] == 1.0 and state["budget_offset"] == 0.0

    assert proxy.failed > 0 and any("checkpoint_" in p for p in proxy.failed_paths), proxy.failed_paths[:5]
    # the worker's retries of its checkpoint uploads, counted (other processes, e.g. the driver, met the storm too)
    assert 0 < result.metrics["s3_retries"] <= proxy.failed
    names = registered_checkpoints(dataclasses.replace(job, endpoint=None))
    assert len(names) >= 2  # steps 4 and 8
    for name in names:  # each registered checkpoint is whole: it loads, at the step its name says
        local = tmp_path / f"{name}.pth.tar"
        local.write_bytes(storage.read_bytes(storage.join(bucket, "runs", "budget", name, CHECKPOINT_FILE)))
        assert read_checkpoint(local)["step"] == int(name.rsplit("_s", 1)[1])
    assert result.checkpoint.endswith(f"{names[-1]}/{CHECKPOINT_FILE}")


def test_evaluation_writes_its_tables_through_a_503_storm_and_counts_the_retries(blinking_s3, tiny_config_path,
                                                                                  sqlite_uri, tmp_path):
    """In-process evaluation (every S3 request in this process) writes its tables to S3 through a storm: the
    run's s3_retries equals the 503s the proxy answered, and the tables come back whole."""
    import io

    import pyarrow.parquet as pq

    from evaluation.ray_jobs import evaluate
    from evaluation.runner import EvalConfig
    from preprocessing.synthetic import write_synthetic_shards
    from services.tracking.queries import get_run

    data = write_synthetic_shards(tmp_path / "shards", num_videos=2, num_frames=8, seed=3)
    proxy = blinking_s3["start"](_writes_under(f"/{tmp_path.name}/eval/"))
    out = f"s3://{blinking_s3['bucket']}/{tmp_path.name}/eval"
    result = evaluate(EvalConfig(config_path=str(tiny_config_path), checkpoint=None, data=str(data), out_dir=out,
                                 domain="synthetic", num_workers=0, endpoint=proxy.endpoint, tracking_uri=sqlite_uri,
                                 experiment="eval-s3-storm"))

    assert proxy.failed > 0, "the storm never hit the job"
    assert result.s3_retries == proxy.failed  # every 503 retried and counted, nothing else
    assert get_run(sqlite_uri, result.run_id)["metrics"]["s3_retries"] == proxy.failed
    frames = pq.read_table(io.BytesIO(storage.read_bytes(f"{out}/per_frame.parquet")))  # straight from moto
    assert frames.num_rows == 2 * 8
