"""`fomm runs compare` (evaluation.compare.main) over real runs in a local MLflow store."""

from __future__ import annotations

import json

import pytest

from evaluation import compare
from services.tracking.run import Tracker


def test_compare_table_csv_json_and_plot(tmp_path, capsys, fresh_sqlite_uri) -> None:
    uri = fresh_sqlite_uri  # a store of its own: the experiments it lists are this test's
    for name, l1, akd in (("good", 0.05, 1.25), ("bad", 0.25, 3.5)):
        with Tracker(uri, "cmp", run_name=name) as t:
            t.log_params({"checkpoint.sha256": "ab" * 32})
            t.log_metrics({"l1": l1, "akd/dlib-68": akd, "l1_frames": 10.0, "num_videos": 2.0})
    with Tracker(uri, "cmp", run_name="other-backend") as t:
        t.log_metrics({"l1": 0.1, "akd/foreground-centroids": 9.0})

    assert compare.main(["--experiment", "cmp", "--tracking-uri", uri, "--sort", "l1",
                         "--plot", str(tmp_path / "runs.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["run_name", "run_id", "status", "start_time", "checkpoint_sha256", "l1",
                              "akd/dlib-68", "akd/foreground-centroids"]
    assert [line.split()[0] for line in out[2:]] == ["good", "other-backend", "bad"]  # sorted by L1
    assert "0.0500" in out[2] and "1.2500" in out[2] and "abababababab" in out[2]
    assert (tmp_path / "runs.png").stat().st_size > 1000

    assert compare.main(["-e", "cmp", "--tracking-uri", uri, "--metrics", "l1", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["run_name"]: r["l1"] for r in rows} == {"good": 0.05, "bad": 0.25, "other-backend": 0.1}

    assert compare.main(["-e", "cmp", "--tracking-uri", uri, "--format", "csv", "--limit", "1"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2

    for name, line in (("cpm", "no experiment of that name (did you mean cmp?)"),  # a typo, as for --metrics
                       ("nothing-here", "no experiment of that name (the store has: Default, cmp)")):
        assert compare.main(["-e", name, "--tracking-uri", uri]) == 2
        assert capsys.readouterr().err == f"fomm runs compare: error: --experiment {name}: {line}\n"
    assert compare.main(["-e", "cmp", "--tracking-uri", uri, "--filter", "metrics.l1 > 1"]) == 2
    assert capsys.readouterr().err.endswith("--experiment cmp: no runs matching --filter 'metrics.l1 > 1'\n")

    # a metric by the paper's name stands for its backend-labelled keys (their frame counts left out)
    assert compare.main(["-e", "cmp", "--tracking-uri", uri, "--metrics", "akd,l1", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split(",")[5:] == ["akd/dlib-68", "akd/foreground-centroids", "l1"]
    # a name no run has was an empty column, a misspelt --sort sorted nothing: one line naming the flag
    for flags, line in ((["--metrics", "l1,num_video"], "--metrics num_video: no run of --experiment cmp has that "
                         "metric (did you mean num_videos?)"),
                        (["--metrics", "psnr"], "--metrics psnr: no run of --experiment cmp has that metric (they "
                         "have: akd/dlib-68, akd/foreground-centroids, l1, l1_frames, num_videos)"),
                        (["--sort", "L1"], "--sort L1: no run of --experiment cmp has that metric (did you mean l1?)"),
                        (["--sort", "akd"], "--sort akd: names 2 metrics (akd/dlib-68, akd/foreground-centroids): "
                         "choose one"),
                        (["--filter", "metrics.l1 <"], "--filter 'metrics.l1 <': Invalid clause(s) in filter string: "
                         "'metrics.l1', '<'"),
                        # parsed, it failed in the store: "MLflow: Invalid comparator …", naming no flag
                        (["--filter", "metrics.l1 <<< 3"], "--filter 'metrics.l1 <<< 3': '<<<' does not compare a "
                         "metric (use !=, <, <=, =, >, >=)")):
        assert compare.main(["-e", "cmp", "--tracking-uri", uri, *flags]) == 2
        assert capsys.readouterr().err == f"fomm runs compare: error: {line}\n"
    # every digit in CSV and JSON; the table showed 2e-05 as 0.0000
    with Tracker(uri, "cmp-small", run_name="small") as t:
        t.log_metrics({"l1": 2e-05, "aed/x": 0.123456789})
    assert compare.main(["-e", "cmp-small", "--tracking-uri", uri, "--metrics", "l1,aed", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split(",")[5:] == ["2e-05", "0.123456789"]
    assert compare.main(["-e", "cmp-small", "--tracking-uri", uri, "--metrics", "l1,aed"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[-2:] == ["2e-05", "0.1235"]


def test_a_run_that_did_not_finish_shows_why(capsys, sqlite_uri, tmp_path) -> None:
    """A failed evaluation among the compared ones showed FAILED and its partial metrics, with no word why; its
    reason follows in a last column, shown only where a run did not finish."""
    with Tracker(sqlite_uri, "cmp-why", run_name="ok") as t:
        t.log_metrics({"l1": 0.05})
    with pytest.raises(OSError), Tracker(sqlite_uri, "cmp-why", run_name="full") as t:
        t.log_metrics({"l1": 0.07})
        raise OSError(28, "No space left on device", "/out/per_frame.parquet")
    assert compare.main(["-e", "cmp-why", "--tracking-uri", sqlite_uri, "--format", "json"]) == 0
    rows = {r["run_name"]: (r["status"], r["end_reason"]) for r in json.loads(capsys.readouterr().out)}
    assert rows == {"ok": ("FINISHED", ""), "full": ("FAILED", "/out/per_frame.parquet: no space left on the device")}
    assert compare.main(["-e", "cmp-why", "--tracking-uri", sqlite_uri, "--filter", "attributes.status = "
                         "'FINISHED'"]) == 0
    assert "end_reason" not in capsys.readouterr().out  # all finished: no empty column
    with Tracker(sqlite_uri, "cmp-none", run_name="bare"):  # a run of no metric: its plot was a traceback
        pass
    plot = tmp_path / "none.png"
    assert compare.main(["-e", "cmp-none", "--tracking-uri", sqlite_uri, "--plot", str(plot)]) == 2
    assert capsys.readouterr().err == (f"fomm runs compare: error: --plot {plot}: the 1 run(s) matched hold no "
                                       "metrics to plot\n") and not plot.exists()


def test_compare_on_a_store_that_does_not_exist_says_so_and_makes_none(tmp_path, capsys, monkeypatch) -> None:
    """A query makes no store: a missing or empty SQLite file (named, or the default ./mlruns) is one line, and stays
    as it was."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    assert compare.main(["--tracking-uri", uri]) == 2
    assert capsys.readouterr().err == (f"fomm runs compare: error: --tracking-uri {uri}: no MLflow store there (nothing "
                                       "to compare: train, tune or evaluate first, or name the store)\n")
    assert compare.main([]) == 2
    assert "mlruns/mlflow.db (the default): no MLflow store there" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "empty.db").touch()  # an empty file: MLflow would write its tables into it (or fail, read-only)
    assert compare.main(["--tracking-uri", f"sqlite:///{tmp_path / 'empty.db'}"]) == 2
    assert "empty.db: no MLflow store there" in capsys.readouterr().err
    assert (tmp_path / "empty.db").stat().st_size == 0
