"""pipelines/evaluate.py end to end: synthetic shards → Ray Data on the session's multi-node cluster, one of whose
worker nodes is lost mid-job → a real MLflow server on 127.0.0.1, read back through the MLflow client; plus --help
of evaluate and benchmark."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest

# Ray ≥ 2.5x turns on token auth for `ray start` whenever ~/.ray/auth_token exists (any local ray.init() writes
# one), and the dashboard then answers 401 to the ray_head fixture's health check. Tests run without it.


@pytest.mark.parametrize("name", ["evaluate", "benchmark"])
def test_pipeline_help(repo_root, name) -> None:
    out = subprocess.run([sys.executable, str(repo_root / "pipelines" / f"{name}.py"), "--help"],
                         capture_output=True, text=True, timeout=120, cwd=repo_root)
    assert out.returncode == 0, out.stderr
    assert "--config" in out.stdout and "--data" in out.stdout and "--tracking-uri" in out.stdout


def lose_the_node_of(actor_class: str, cluster, dashboard: str, timeout: float, lost: list) -> None:  # noqa: ANN001
    """Once an actor whose class name contains `actor_class` is alive on a worker node, SIGKILL that node whole
    and start its replacement (as an autoscaler would); `lost` receives the node's name."""
    from ray.util.state import list_actors

    deadline = time.time() + timeout
    while time.time() < deadline:
        names = {node: name for name, node in cluster.node_ids().items()}
        alive = [a for a in list_actors(address=dashboard, filters=[("state", "=", "ALIVE")], detail=True)
                 if actor_class in a.class_name and a.node_id in names]
        if alive:
            lost.append(names[alive[0].node_id])
            cluster.kill_worker(lost[0])
            cluster.replace_worker(lost[0])
            return
        time.sleep(0.25)  # each look asks the state API (dashboard and GCS CPU)


@pytest.mark.ray
def test_evaluate_pipeline_on_ray_with_mlflow_server(repo_root, tiny_config_path, tmp_path, ray_head,
                                                     mlflow_server) -> None:
    import mlflow

    from evaluation.reconstruction import ModelSource
    from fomm.checkpoint import checkpoint_bytes
    from preprocessing.synthetic import write_synthetic_shards

    data = write_synthetic_shards(tmp_path / "shards", num_videos=3, num_frames=6, seed=11)
    model = ModelSource.resolve(tiny_config_path, None).load()
    checkpoint = tmp_path / "tiny.pth.tar"
    checkpoint.write_bytes(checkpoint_bytes(generator=model.generator, kp_detector=model.kp_detector, epoch=3))
    # the driver must stay on loopback: Ray rewrites 127.0.0.1 to the machine's interface address unless
    # multi-node clustering is off for this process (the head only listens on 127.0.0.1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_ADDRESS": ray_head["address"],
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    cmd = [sys.executable, str(repo_root / "pipelines" / "evaluate.py"), "--config", str(tiny_config_path),
           "--checkpoint", str(checkpoint), "--data", str(data), "--tracking-uri", mlflow_server,
           "--max-videos", "2", "--out", str(tmp_path / "out"), "--domain", "synthetic", "--workers", "2",
           "--experiment", "e2e-eval", "--run-name", "e2e"]
    lost: list[str] = []
    killer = threading.Thread(target=lose_the_node_of, daemon=True,
                              args=("EvaluateClips", ray_head["cluster"], ray_head["dashboard"], 300, lost))
    killer.start()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    killer.join(timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert lost, "no evaluation actor was found to lose its node"
    run_id = re.search(r"MLflow run id: (\w+)", proc.stdout).group(1)
    assert re.search(r"^L1\s+\d\.\d{4}\s+12\s", proc.stdout, re.M), proc.stdout  # 2 clips × 6 frames

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "e2e"
    assert client.get_experiment(run.info.experiment_id).name == "e2e-eval"
    metrics, params = run.data.metrics, run.data.params
    assert metrics["num_videos"] == 2 and metrics["num_frames"] == 12 and metrics["num_errors"] == 0
    assert 0 < metrics["l1"] < 1 and "aed/colour-histogram" in metrics
    assert params["checkpoint.path"] == str(checkpoint) and len(params["checkpoint.sha256"]) == 64
    assert params["eval.max_videos"] == "2" and params["akd.backend"] == "foreground-centroids"
    assert run.data.tags["checkpoint.sha256"] == params["checkpoint.sha256"]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "tables", "report", "images"} <= artifacts
    per_video = pq.read_table(tmp_path / "out" / "per_video.parquet").to_pylist()
    assert sorted(v["clip_id"] for v in per_video) == ["synth0000_000", "synth0001_000"]
    per_frame = pq.read_table(tmp_path / "out" / "per_frame.parquet")
    assert per_frame.num_rows == 12
    assert abs(sum(per_frame.column("l1").to_pylist()) / 12 - metrics["l1"]) < 1e-9

    # the same tables as one process on one machine (--workers 0), the lost node notwithstanding
    one = [*cmd[:cmd.index("--tracking-uri")], "--tracking-uri", f"sqlite:///{tmp_path / 'one.db'}",
           *cmd[cmd.index("--max-videos"):]]
    one[one.index("--out") + 1], one[one.index("--workers") + 1] = str(tmp_path / "one"), "0"
    stale = tmp_path / "one" / "report" / "worst_synth0009_000.gif"  # an earlier evaluation into this --out
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"GIF89a")
    (tmp_path / "one" / "notes.txt").write_text("mine")
    alone = subprocess.run(one, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert alone.returncode == 0, alone.stdout[-3000:] + alone.stderr[-3000:]
    assert not stale.exists() and (stale.parent / "index.html").is_file()  # the report is this run's alone
    assert (tmp_path / "one" / "notes.txt").read_text() == "mine"  # the user's files stay
    key = ("clip_id", "frame")
    cluster_rows = sorted(per_frame.to_pylist(), key=lambda r: tuple(r[k] for k in key))
    alone_rows = sorted(pq.read_table(tmp_path / "one" / "per_frame.parquet").to_pylist(),
                        key=lambda r: tuple(r[k] for k in key))
    assert [tuple(r[k] for k in key) for r in cluster_rows] == [tuple(r[k] for k in key) for r in alone_rows]
    for a, b in zip(cluster_rows, alone_rows):
        for name, value in a.items():
            if isinstance(value, float):
                assert value == pytest.approx(b[name], rel=1e-6, abs=1e-9, nan_ok=True), (name, a, b)
            else:
                assert value == b[name], (name, a, b)

