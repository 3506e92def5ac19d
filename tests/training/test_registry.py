"""Training registers its best checkpoint as an MLflow model version, and `pipelines/benchmark.py --model-name`
evaluates that version: a real MLflow server, a real (tiny) Ray Train run."""

from __future__ import annotations

import filecmp
import importlib.util
import math
import re
from pathlib import Path

import pytest

from fomm.checkpoint import read_checkpoint
from preprocessing.synthetic import write_synthetic_shards
from services.tracking.queries import search_runs
from services.tracking.registry import download_model_version, latest_model_version
from services.tracking.store import make_client
from tests.conftest import run_artifacts

# 32×32 frames, 2 pyramid scales and two VGG slices: two steps take seconds on 2 cores
SMALL = ["dataset_params.frame_shape=[32,32,3]", "train_params.batch_size=2", "train_params.scales=[1,0.5]",
         "train_params.checkpoint_every_steps=1", "train_params.loss_weights.perceptual=[10,10,0,0,0]"]


def load_pipeline(repo_root: Path, name: str):  # noqa: ANN201 - the pipeline module
    spec = importlib.util.spec_from_file_location(f"pipeline_{name}", repo_root / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.ray
def test_training_registers_its_best_checkpoint_and_the_benchmark_evaluates_that_version(
        ray_local, mlflow_server, synthetic_shards, tiny_config_path, repo_root, tmp_path, capsys):
    name = f"registry-{tmp_path.name}"  # the server is shared by the session
    train = load_pipeline(repo_root, "train")
    assert train.main(["--config", str(tiny_config_path), "--data", str(synthetic_shards), "--storage",
                       str(tmp_path / "storage"), "--max-steps", "2", "--val-clips", "0", "--log-images-every", "0",
                       "--tracking-uri", mlflow_server, "--experiment", "registry", "--model-name", name,
                       *[a for s in SMALL for a in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    assert f"registered model: {name} version 1" in out, out
    run_id = re.search(r"^mlflow run id: (\w+)$", out, re.M).group(1)
    best = Path(re.search(r"^best checkpoint: (\S+)$", out, re.M).group(1))

    version = latest_model_version(mlflow_server, name)
    assert version["version"] == 1 and version["run_id"] == run_id and version["source"] == f"runs:/{run_id}/model"
    # the MLflow UI's Models column lists the versions that a model-version search by run id finds
    assert [int(v.version) for v in make_client(mlflow_server).search_model_versions(
        f"run_id IN ('{run_id}')")] == [1]
    assert version["tags"]["checkpoint_path"] == str(best) and version["tags"]["final.step"] == "2"
    assert version["tags"]["step"] == str(read_checkpoint(best)["step"])  # the version says which step it is
    assert {"model/checkpoint.pth.tar", "model/config.yaml"} <= set(run_artifacts(mlflow_server, run_id, tmp_path / "artifacts"))
    files = download_model_version(mlflow_server, name, 1, tmp_path / "dl")
    assert filecmp.cmp(files / "checkpoint.pth.tar", best, shallow=False)  # the original-format file itself
    assert set(read_checkpoint(files / "checkpoint.pth.tar")) >= {"generator", "kp_detector"}  # weights_only load

    bench = load_pipeline(repo_root, "benchmark")
    data = write_synthetic_shards(tmp_path / "bench", num_videos=2, num_frames=6, seed=5)
    assert bench.main(["--model-name", name, "--config", str(tiny_config_path), "--data", str(data),
                       "--tracking-uri", mlflow_server, "--experiment", f"bench-{name}", "--workers", "0",
                       "--domain", "synthetic", "--out", str(tmp_path / "out"), "--metrics", "l1",
                       "--run-name", "registered"]) == 0
    assert "baseline: none" in capsys.readouterr().out
    [run] = search_runs(mlflow_server, f"bench-{name}")
    assert run["tags"]["benchmark.model_name"] == name and run["tags"]["benchmark.model_version"] == "1"
    assert run["status"] == "FINISHED" and math.isfinite(run["metrics"]["l1"])
