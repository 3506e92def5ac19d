"""The scheduled benchmark: newest checkpoint, best earlier run, regression flagged (exit 1) or passed (exit 0)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from evaluation.benchmark import judge, newest_checkpoint
from preprocessing.synthetic import write_synthetic_shards
from services.tracking.queries import search_runs
from tests.conftest import shard_clips


def load_pipeline(repo_root, name: str):
    spec = importlib.util.spec_from_file_location(f"pipeline_{name}", repo_root / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def find_regressions(current: dict, best: dict, keys: list[str], threshold: float) -> tuple[list, dict]:
    from evaluation.ray_jobs import EvalResult

    result = EvalResult(run_id="r", aggregate={}, metrics=current, labels={k: k for k in keys}, table="", out_dir="")
    return judge(result, keys, best=best, threshold=threshold)


def test_find_regressions_hand_made() -> None:
    best = {"l1": 0.10, "akd/x": 2.0, "aed/y": float("nan")}
    ok, compared = find_regressions({"l1": 0.104, "akd/x": 1.0, "aed/y": 5.0}, best, ["l1", "akd/x", "aed/y"], 0.05)
    assert ok == [] and compared == {"l1": (0.104, 0.10), "akd/x": (1.0, 2.0)}  # NaN baselines are not judged
    bad, _ = find_regressions({"l1": 0.106, "akd/x": 2.0}, best, ["l1", "akd/x"], 0.05)
    assert len(bad) == 1 and bad[0].startswith("l1: 0.10600 > 0.10500")
    # a current value that is NaN (no frame scored) or missing fails, with or without a baseline
    bad, compared = find_regressions({"l1": float("nan")}, {}, ["l1", "akd/x"], 0.05)
    assert bad == ["l1: nan (no frame could be scored)", "akd/x: missing (no frame could be scored)"]
    assert compared == {}
    bad, compared = find_regressions({"l1": float("nan"), "akd/x": 1.0}, best, ["l1", "akd/x"], 0.05)
    assert bad == ["l1: nan (no frame could be scored)"] and compared == {"akd/x": (1.0, 2.0)}


def test_error_share_and_summary() -> None:
    from evaluation.ray_jobs import EvalResult

    errors = [{"clip_id": f"c{i}", "error": ("ValueError: bad frame" if i < 3 else "OSError: gone") + " | tb"}
              for i in range(4)]
    result = EvalResult(run_id="r", aggregate={}, metrics={}, labels={}, table="", out_dir="", errors=errors,
                        num_clips=8)
    assert judge(result, [], 0.5) == ([], {})  # 4 of 8 failed: exactly the allowed share
    assert judge(result, [], 0.49)[0] == ["errors: 4 of 8 clips failed (50% > --max-error-fraction 49%): "
                                          "3× ValueError: bad frame (e.g. c0); 1× OSError: gone (e.g. c3)"]
    assert judge(EvalResult(run_id="r", aggregate={}, metrics={}, labels={}, table="", out_dir="",
                            num_clips=8), [], 0.0) == ([], {})


def test_newest_checkpoint(tmp_path) -> None:
    for i, name in enumerate(["a.pth.tar", "sub/b.pth.tar", "c.txt", ".d.pth.tar.tmp"]):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (1_000 + i, 1_000 + i))
    assert newest_checkpoint(str(tmp_path)) == str(tmp_path / "sub" / "b.pth.tar")
    assert newest_checkpoint(str(tmp_path / "a.pth.tar")) == str(tmp_path / "a.pth.tar")
    (tmp_path / "z.pth.tar").symlink_to(tmp_path / "gone.pth.tar")  # a broken link beside them: was "[Errno 2]"
    assert newest_checkpoint(str(tmp_path)) == str(tmp_path / "sub" / "b.pth.tar")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint files"):
        newest_checkpoint(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        newest_checkpoint(str(tmp_path / "missing"))


def test_benchmark_flags_a_worse_checkpoint_and_passes_an_equal_one(repo_root, tiny_config_path, tmp_path,
                                                                     capsys, sqlite_uri) -> None:
    uri = sqlite_uri
    from evaluation.reconstruction import ModelSource
    from fomm.checkpoint import checkpoint_bytes

    data = write_synthetic_shards(tmp_path / "bench", num_videos=2, num_frames=6, seed=5)
    ckpts = tmp_path / "ckpts"
    model = ModelSource.resolve(tiny_config_path, None).load()
    bench = load_pipeline(repo_root, "benchmark")
    args = ["--checkpoints", str(ckpts), "--config", str(tiny_config_path), "--data", str(data),
            "--tracking-uri", uri, "--workers", "0", "--domain", "synthetic", "--out", str(tmp_path / "out"),
            "--metrics", "l1"]  # a random model's frames have no foreground: AKD has no value (a failure)

    def save(name: str, when: int) -> None:
        path = ckpts / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(checkpoint_bytes(generator=model.generator, kp_detector=model.kp_detector))
        os.utime(path, (when, when))

    save("base.pth.tar", 1_000)
    assert bench.main(args + ["--run-name", "base"]) == 0
    assert "baseline: none" in capsys.readouterr().out

    save("same.pth.tar", 2_000)  # same quality: identical weights in a newer file
    assert bench.main(args + ["--run-name", "same"]) == 0
    out = capsys.readouterr().out
    assert "no regression" in out and "checkpoint: " + str(ckpts / "same.pth.tar") in out

    # deliberately worse: a constant output, each channel at the extreme away from the data's mean colour
    mean = np.mean([c["frames"].mean(axis=(0, 1, 2)) / 255 for c in shard_clips(str(data))], axis=0)
    with torch.no_grad():
        model.generator.final.weight.zero_()
        model.generator.final.bias.copy_(torch.tensor(np.where(mean < 0.5, 10.0, -10.0)))
    save("worse.pth.tar", 3_000)
    assert bench.main(args + ["--run-name", "worse"]) == 1
    captured = capsys.readouterr()
    assert "REGRESSION: l1:" in captured.err

    runs = {r["run_name"]: r for r in search_runs(uri, "fomm-benchmark")}
    assert runs["same"]["metrics"]["l1"] == runs["base"]["metrics"]["l1"]
    assert runs["worse"]["metrics"]["l1"] > 0.5 > runs["base"]["metrics"]["l1"]
    assert runs["worse"]["tags"]["benchmark.regression"] == "true"
    assert runs["same"]["tags"]["benchmark.regression"] == "false"
    assert runs["worse"]["tags"]["benchmark.baseline_run_id"] in (runs["base"]["run_id"], runs["same"]["run_id"])
    assert all(r["tags"]["fomm.kind"] == "benchmark" for r in runs.values())
    # a run that failed the gate was FINISHED like a passing one, and the next benchmark's baseline
    assert [runs[n]["status"] for n in ("base", "same", "worse")] == ["FINISHED", "FINISHED", "FAILED"]
    assert runs["worse"]["tags"]["fomm.end_reason"].startswith("REGRESSION: l1:")


def test_benchmark_over_a_checkpoint_that_fails_every_clip_exits_1(repo_root, tiny_config_path, tmp_path,
                                                                   fresh_sqlite_uri) -> None:
    """The real pipeline as a process: a checkpoint whose generator outputs NaN fails every clip → exit 1. Its
    weights pass the checkpoint's checks (NaN weights and negative batch-norm variances are refused before the run):
    a first convolution of 1e38 overflows float32 to inf, and inf − inf is NaN a layer later."""
    import subprocess
    import sys

    from evaluation.reconstruction import ModelSource
    from fomm.checkpoint import checkpoint_bytes

    data = write_synthetic_shards(tmp_path / "bench", num_videos=2, num_frames=4, seed=7)
    model = ModelSource.resolve(tiny_config_path, None).load()
    with torch.no_grad():
        model.generator.first.conv.weight.fill_(1e38)
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "nan.pth.tar").write_bytes(checkpoint_bytes(generator=model.generator,
                                                                      kp_detector=model.kp_detector))
    uri = fresh_sqlite_uri
    cmd = [sys.executable, str(repo_root / "pipelines" / "benchmark.py"), "--checkpoints", str(tmp_path / "ckpts"),
           "--config", str(tiny_config_path), "--data", str(data), "--tracking-uri", uri, "--workers", "0",
           "--domain", "synthetic", "--keypoints", "none", "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1, done.stderr[-3000:]
    regression = [line for line in done.stderr.splitlines() if line.startswith("REGRESSION: ")]
    assert len(regression) == 1, done.stderr[-3000:]
    assert "errors: 2 of 2 clips failed (100% > --max-error-fraction 0%): 2× ValueError: the model produced " \
           "non-finite frames" in regression[0]
    assert "l1: nan (no frame could be scored)" in regression[0]
    [run] = search_runs(uri, "fomm-benchmark")
    assert run["tags"]["benchmark.regression"] == "true" and run["metrics"]["num_errors"] == 2
    # `evaluate` of it exits 1 too, and its run's page says FAILED and why (it said FINISHED)
    cmd = [sys.executable, str(repo_root / "pipelines" / "evaluate.py"), "--checkpoint", str(tmp_path / "ckpts" /
           "nan.pth.tar"), *cmd[4:]]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1 and "FAILED: errors: 2 of 2 clips failed" in done.stderr, done.stderr[-3000:]
    [run] = search_runs(uri, "fomm-eval")
    assert run["status"] == "FAILED" and run["tags"]["fomm.end_reason"].startswith("errors: 2 of 2 clips failed")


def test_promote_moves_the_alias_to_a_version_without_regression_only(repo_root, tiny_config_path, tmp_path,
                                                                      capsys, fresh_sqlite_uri) -> None:
    """`--model-name NAME --promote champion`: a version that passes becomes models:/NAME@champion, the model the
    animation and evaluation stages take; a worse newer one leaves the alias where it was. An alias MLflow would
    refuse, or --promote without a registered model, is one line before anything is evaluated."""
    from evaluation.reconstruction import ModelSource
    from fomm.checkpoint import checkpoint_bytes
    from services.tracking.registry import register_run_files
    from services.tracking.run import Tracker
    from services.tracking.store import make_client

    uri, name = fresh_sqlite_uri, "guarded"
    data = write_synthetic_shards(tmp_path / "bench", num_videos=2, num_frames=6, seed=5)
    model = ModelSource.resolve(tiny_config_path, None).load()

    def register(tag: str) -> None:
        files = tmp_path / tag
        files.mkdir()
        (files / "checkpoint.pth.tar").write_bytes(checkpoint_bytes(generator=model.generator,
                                                                    kp_detector=model.kp_detector))
        with Tracker(uri, "train", run_name=tag) as run:
            register_run_files(uri, name, run.run_id, files)

    bench = load_pipeline(repo_root, "benchmark")
    args = ["--model-name", name, "--promote", "champion", "--config", str(tiny_config_path), "--data", str(data),
            "--tracking-uri", uri, "--workers", "0", "--domain", "synthetic", "--out", str(tmp_path / "out"),
            "--metrics", "l1"]
    register("good")
    assert bench.main(args) == 0
    assert f"promoted: models:/{name}@champion is version 1" in capsys.readouterr().out
    mean = np.mean([c["frames"].mean(axis=(0, 1, 2)) / 255 for c in shard_clips(str(data))], axis=0)
    with torch.no_grad():  # a constant output at the extreme away from the data's mean colour: far worse
        model.generator.final.weight.zero_()
        model.generator.final.bias.copy_(torch.tensor(np.where(mean < 0.5, 10.0, -10.0)))
    register("worse")
    assert bench.main(args) == 1
    assert "promoted" not in capsys.readouterr().out
    assert int(make_client(uri).get_model_version_by_alias(name, "champion").version) == 1
    for flags, line in ((["--promote", "v2"], "--promote v2: not an alias MLflow takes"),
                        (["--promote", "champion", "--checkpoints", str(tmp_path / "good")],
                         "--promote champion: needs --model-name")):
        argv = [a for a in args if a not in ("--promote", "champion")] + flags
        if "--checkpoints" in flags:
            argv = argv[2:]  # without --model-name
        assert bench.main(argv) == 2
        assert capsys.readouterr().err.startswith(f"benchmark: error: {line}")
    assert len(search_runs(uri, "fomm-benchmark")) == 2


@pytest.mark.parametrize(("flags", "why"), [
    (["--metrics", "akd", "--keypoints", "none"], "akd is not measured with --keypoints none"),
    (["--metrics", "l1,mkr", "--no-mkr"], "mkr is not measured with --no-mkr"),
    (["--metrics", "aed", "--embedding", "none"], "aed is not measured with --embedding none"),
])
def test_a_metric_named_for_the_gate_that_its_flags_turn_off_is_refused(repo_root, tmp_path, capsys, flags, why):
    """The gate passed a metric it never measured ("no regression", exit 0); by default the gate compares the
    metrics the evaluation measures, as before."""
    benchmark = load_pipeline(repo_root, "benchmark")
    common = ["--config", "c.yaml", "--checkpoints", "ckpts", "--data", "d", "--out", str(tmp_path / "out")]
    assert benchmark.main([*common, *flags]) == 2
    assert capsys.readouterr().err == (f"benchmark: error: --metrics {flags[1]}: {why} (leave it out, or turn its "
                                       "extractor on)\n")
    assert benchmark.build(benchmark.parse_args([*common, "--keypoints", "none"])).metrics == ("l1", "akd", "mkr",
                                                                                               "aed")
