"""The evaluation job in-process (no Ray): tables, error rows, labelled MLflow metrics, the report."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from evaluation import runner
from evaluation.ray_jobs import evaluate
from preprocessing.synthetic import write_synthetic_shards
from services.tracking.queries import get_run
from tests.conftest import run_artifacts


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """3 synthetic test clips, 8 frames of 64², plus a shard holding one undecodable clip."""
    from preprocessing.shards import ClipRecord, records_to_table, write_table_atomic

    root = tmp_path_factory.mktemp("evalshards")
    write_synthetic_shards(root, num_videos=3, num_frames=8, seed=3)
    bad = ClipRecord(video_id="bad", clip_id="bad_000", person_id="x", split="test", fps=25.0, height=64,
                     width=64, start_frame=0, end_frame=2, crop_box=(0, 0, 64, 64), source_path="-",
                     source_height=64, source_width=64, frames=[b"not an image", b"!"])
    write_table_atomic(records_to_table([bad]), str(root / "z-bad.parquet"))
    return root


def test_per_video_and_aggregate_hand_made() -> None:
    rows = [{"video_id": "a", "clip_id": "a0", "person_id": "p", "frame": 0, "l1": 0.1, "akd": np.nan},
            {"video_id": "b", "clip_id": "b0", "person_id": "p", "frame": 0, "l1": 0.5, "akd": 2.0},
            {"video_id": "b", "clip_id": "b0", "person_id": "p", "frame": 1, "l1": 0.6, "akd": 4.0}]
    videos = runner.per_video(rows, ["l1", "akd"])
    assert videos[0]["clip_id"] == "a0" and np.isnan(videos[0]["akd"]) and videos[0]["num_frames"] == 1
    assert videos[1]["l1"] == pytest.approx(0.55) and videos[1]["akd"] == 3.0
    agg = runner.aggregate_frames(rows, ["l1", "akd"])
    assert agg["l1"] == pytest.approx(0.4) and agg["akd"] == 3.0 and agg["akd_frames"] == 2
    assert agg["num_videos"] == 2 and agg["num_frames"] == 3


def test_evaluate_in_process(tiny_config_path, shards, tmp_path, sqlite_uri) -> None:
    uri = sqlite_uri
    cfg = runner.EvalConfig(config_path=str(tiny_config_path), checkpoint=None, data=str(shards),
                            out_dir=str(tmp_path / "out"), domain="synthetic", num_workers=0, tracking_uri=uri,
                            experiment="eval-test")
    result = evaluate(cfg)
    # tables: 3 clips × 8 frames; the undecodable clip is an error row and the job went on
    frames = pq.read_table(tmp_path / "out" / "per_frame.parquet").to_pylist()
    videos = pq.read_table(tmp_path / "out" / "per_video.parquet").to_pylist()
    errors = pq.read_table(tmp_path / "out" / "errors.parquet").to_pylist()
    assert len(frames) == 24 and len(videos) == 3
    assert [e["clip_id"] for e in errors] == ["bad_000"] and "frame 0" in errors[0]["error"]
    assert result.aggregate["l1"] == pytest.approx(np.mean([f["l1"] for f in frames]))
    # the figures carry the name of the backend that produced them
    assert set(result.labels.values()) == {"l1", "akd/foreground-centroids", "akd_l2/foreground-centroids",
                                           "aed/colour-histogram", "aed_l2/colour-histogram"}
    run = get_run(uri, result.run_id)
    assert run["status"] == "FINISHED" and run["tags"]["fomm.kind"] == "evaluation"
    assert run["metrics"]["l1"] == pytest.approx(result.aggregate["l1"])
    assert run["metrics"]["num_videos"] == 3 and run["metrics"]["num_errors"] == 1
    assert run["params"]["akd.backend"] == "foreground-centroids"
    assert run["params"]["aed.formula"].startswith("sum over dims of (e_real - e_generated)^2")
    assert run["params"]["checkpoint.path"] == "random-init" and run["params"]["fomm.model_params.common_params.num_kp"] == "5"
    artifacts = run_artifacts(uri, result.run_id, tmp_path / "artifacts")
    assert {"config.yaml", "tables/per_video.parquet", "report/index.html", "images/summary.png"} <= set(artifacts)
    html = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "AKD · foreground-centroids" in html and "worst" in html and "best" in html
    assert len(list((tmp_path / "out" / "report").glob("*.gif"))) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # written whole, no temporary left


def test_evaluate_clip_matches_an_independent_computation(tiny_config_path, shards) -> None:
    from evaluation.metrics import l1_per_frame
    from evaluation.reconstruction import ModelSource, reconstruct_video
    from evaluation.runner import Extractors
    from preprocessing.shards import decode_frames, read_table

    row = read_table(str(shards / "test-00003.parquet")).to_pylist()[1]
    model = ModelSource.resolve(tiny_config_path, None).load()
    rows = runner.evaluate_clip(row, model, Extractors())
    frames = decode_frames(row["frames"])
    expected = l1_per_frame(frames, reconstruct_video(model, frames)["prediction"])
    assert [r["l1"] for r in rows] == pytest.approx(expected.tolist())
    assert [r["frame"] for r in rows] == list(range(8)) and all(r["error"] is None for r in rows)


class _FailingKeypoints:
    """A keypoint backend whose library fails on the frames (as dlib or face-alignment raise RuntimeError)."""

    name, network, num_points = "failing", "none", 1

    def __call__(self, frames):  # noqa: ANN001, ANN204
        raise RuntimeError("detector crashed on a 64×64 frame")


class _BuggyKeypoints(_FailingKeypoints):
    """A keypoint backend with a programming error (a TypeError is a bug, not bad data)."""

    def __call__(self, frames):  # noqa: ANN001, ANN204
        return len(frames) + "points"


def test_data_errors_are_rows_and_programming_errors_raise(tiny_config_path, shards) -> None:
    from evaluation.reconstruction import ModelSource
    from evaluation.runner import Extractors
    from preprocessing.shards import read_table

    good = read_table(str(shards / "test-00003.parquet")).to_pylist()[0]
    bad = read_table(str(shards / "z-bad.parquet")).to_pylist()[0]
    model = ModelSource.resolve(tiny_config_path, None).load()
    [row] = runner.evaluate_clip(bad, model, Extractors())  # undecodable frames: a row
    assert row["frame"] == -1 and row["error"].startswith("ValueError: frame 0: not a decodable image")
    [row] = runner.evaluate_clip(good, model, Extractors(keypoints=_FailingKeypoints()))  # extractor failure: a row
    assert row["error"].startswith("ExtractorError: failing: detector crashed") and np.isnan(row["l1"])
    with pytest.raises(TypeError):  # a bug is not swallowed into an error row
        runner.evaluate_clip(good, model, Extractors(keypoints=_BuggyKeypoints()))


def test_non_finite_model_output_is_a_clip_error(tiny_config_path, shards) -> None:
    import torch

    from evaluation.reconstruction import ModelSource
    from evaluation.runner import Extractors
    from preprocessing.shards import read_table

    good = read_table(str(shards / "test-00003.parquet")).to_pylist()[0]
    model = ModelSource.resolve(tiny_config_path, None).load()
    with torch.no_grad():
        model.generator.final.bias.fill_(float("nan"))  # every output pixel NaN (uint8 conversion would hide it)
    [row] = runner.evaluate_clip(good, model, Extractors())
    assert row["frame"] == -1 and "non-finite frames" in row["error"]
    with torch.no_grad():  # all-zero keypoint jacobians cannot be inverted: a LinAlgError traceback, exit 1
        for p in model.kp_detector.parameters():
            p.zero_()
    [row] = runner.evaluate_clip(good, model, Extractors())
    assert row["frame"] == -1 and row["error"].startswith("ValueError: the model's keypoint jacobians are singular")
