"""`make demo`'s chain (pipelines/demo.py) end to end at a tiny size: every stage leaves what a person looks at,
the MLflow store holds the training and evaluation runs, and a second run skips every finished stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import mlflow
import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "pipelines" / "demo.py"
STAGES = ("preprocess", "train", "evaluate", "animate")  # no sweep: tests/tuning runs one


def _run_demo(out: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray, as on a laptop
    cmd = [sys.executable, str(DEMO), "--out", str(out), "--config", str(REPO / "configs" / "tiny-64.yaml"),
           "--videos", "8", "--train-minutes", "5", "--train-steps", "2", "--tune-trials", "0"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=840, env=env, cwd=REPO)


@pytest.mark.ray
@pytest.mark.slow
def test_too_few_videos_is_refused_before_any_work(tmp_path):
    out = subprocess.run([sys.executable, str(DEMO), "--out", str(tmp_path / "d"), "--videos", "4"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--videos must be at least 8" in out.stderr
    assert not (tmp_path / "d").exists()
    out = subprocess.run([sys.executable, str(DEMO), "--out", str(tmp_path / "d"), "--videos", "100000000"],
                         capture_output=True, text=True, timeout=120)  # was taken: hours of synthetic videos
    assert out.returncode == 2 and "argument --videos: must be in [1, 1000], got 100000000" in out.stderr, out.stderr
    (tmp_path / "mine").mkdir()  # a folder of the user's: the demo's files were written among them
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    out = subprocess.run([sys.executable, str(DEMO), "--out", str(tmp_path / "mine")], capture_output=True,
                         text=True, timeout=120)
    assert (out.returncode, out.stderr.strip()) == (2, f"demo: error: --out {tmp_path / 'mine'}: a folder of other "
                                                       "files, not an earlier demo's (it holds notes.txt): the demo "
                                                       "writes a folder of its own; choose a new or empty one")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_demo_chain_leaves_results_and_skips_finished_stages(tmp_path, ray_head):
    """`ray_head`: another Ray runs on this machine, as a user's `ray start` would; the demo starts its own."""
    out = tmp_path / "demo"
    first = _run_demo(out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "=== fomm demo finished ===" in first.stdout
    # Ray Train's placement-group cleaner looked for "the" cluster and stopped on finding two (a traceback)
    assert "Traceback" not in first.stdout + first.stderr
    # Ray Train's placement-group cleaner asks its local Ray's dashboard every second or two whether the run's
    # controller lives: without one, a warning each time (445 lines of a demo's 8,594), and it cleaned nothing
    assert "Failed to query Ray Train Controller" not in first.stdout + first.stderr

    records = {name: json.loads((out / "stages" / f"{name}.json").read_text()) for name in STAGES}
    assert records["preprocess"]["num_clips"] >= 6
    assert records["train"]["metrics"]["step"] == 2  # the step cap, not the time budget, ended it

    with av.open(str(out / "animation.mp4")) as video:  # source | driving | result, 3 × 128 wide
        stream = video.streams.video[0]
        frames = sum(1 for _ in video.decode(stream))
        assert (stream.width, stream.height) == (3 * 128, 128)
    assert frames == 48  # every frame of the 48-frame driving video
    assert (out / "training_curves.png").stat().st_size > 0
    assert Path(records["evaluate"]["report"]["html"]).is_file()

    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fomm-demo")
    runs = client.search_runs([experiment.experiment_id])
    names = [r.info.run_name for r in runs]
    assert sorted(names) == ["demo", "demo-eval"]  # the training run and its evaluation
    assert {r.info.status for r in runs} == {"FINISHED"}  # every run says how it ended: none left RUNNING

    second = _run_demo(out)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    for name in STAGES:
        assert f"[{name}] done earlier, skipped" in second.stdout
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)  # nothing ran again


def test_a_stage_whose_record_is_damaged_runs_again(tmp_path, repo_root, capsys):
    """A finished stage's record (<out>/stages/NAME.json) that is not JSON any more was a traceback on the next
    `make demo`; the stage runs again and its record is written anew."""
    from tests.evaluation.test_benchmark import load_pipeline

    demo = load_pipeline(repo_root, "demo")
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "plot.json").write_text('{"cut')
    assert demo.stage(tmp_path, "plot", lambda: {"made": 1}, ray=False)["made"] == 1
    assert "[plot] its record" in capsys.readouterr().out
    assert demo.stage(tmp_path, "plot", lambda: {"made": 2}, ray=False)["made"] == 1  # whole now: skipped
