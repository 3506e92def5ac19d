"""Resuming from an original-format checkpoint restores epoch, step, optimiser state and the LR schedule."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from fomm.checkpoint import read_checkpoint
from fomm.config.schema import load_config
from fomm.train_step import build_train_state, end_epoch, train_step


def _state(tiny_config_path, perceptual: tuple = (0, 0, 0, 0, 0)):
    cfg = load_config(tiny_config_path)
    weights = dataclasses.replace(cfg.train_params.loss_weights, perceptual=perceptual)
    tp = dataclasses.replace(cfg.train_params, epoch_milestones=(1, 2), num_epochs=4, scales=(1, 0.5),
                             loss_weights=weights)
    return build_train_state(cfg.model_params, tp)


def test_learning_rates_after_resume_follow_the_uninterrupted_schedule(tiny_config_path, tmp_path):
    torch.manual_seed(0)
    straight = _state(tiny_config_path)
    lrs = []
    for _ in range(4):
        lrs.append(straight.learning_rates()["lr_generator"])
        end_epoch(straight)
    assert lrs[0] == 2e-4 and abs(lrs[1] - 2e-5) < 1e-12 and abs(lrs[2] - 2e-6) < 1e-13 and abs(lrs[3] - 2e-6) < 1e-13

    for stop in (1, 2):  # interrupt right at each milestone
        first = _state(tiny_config_path)
        for _ in range(stop):
            end_epoch(first)
        path = tmp_path / f"e{stop}.pth.tar"
        path.write_bytes(first.to_bytes())
        resumed = _state(tiny_config_path)
        resumed.load(path)
        assert resumed.epoch == stop
        got = []
        for _ in range(stop, 4):
            got.append(resumed.learning_rates()["lr_generator"])
            end_epoch(resumed)
        assert got == lrs[stop:], f"resumed at epoch {stop}"


def test_optimizer_state_and_step_survive_a_checkpoint(tiny_config_path, tmp_path):
    torch.manual_seed(0)
    state = _state(tiny_config_path)
    batch = {"source": torch.rand(2, 3, 32, 32), "driving": torch.rand(2, 3, 32, 32)}
    for _ in range(2):
        train_step(state, batch)
    end_epoch(state)
    path = tmp_path / "c.pth.tar"
    path.write_bytes(state.to_bytes())
    saved = read_checkpoint(path)
    assert saved["epoch"] == 1 and saved["step"] == 2
    assert set(saved) >= {"generator", "kp_detector", "discriminator", "optimizer_generator",
                          "optimizer_kp_detector", "optimizer_discriminator", "epoch"}
    resumed = _state(tiny_config_path)
    resumed.load(path)
    assert (resumed.epoch, resumed.step) == (1, 2)
    # (perceptual weights are 0 here, so only the kp detector learns, from the equivariance losses)
    adam = resumed.optimizers["kp_detector"].state_dict()["state"]
    assert adam and all(float(s["step"]) == 2 for s in adam.values())  # Adam's moments continue, not restart
    for a, b in zip(resumed.kp_detector.parameters(), state.kp_detector.parameters()):
        torch.testing.assert_close(a, b)


def test_registered_checkpoints_follow_ray_trains_snapshot_with_the_latest_last(tmp_path):
    from training.job import RAY_CHECKPOINTS_FILE, TrainJob, registered_checkpoints

    job = TrainJob(config="configs/vox-256.yaml", data=str(tmp_path), storage=str(tmp_path), name="run")
    assert registered_checkpoints(job) == []  # nothing registered: a resumed run starts at step 0
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint_e0000_s00000006").mkdir()  # on disk but never registered: not listed
    snapshot = {"checkpoint_results": [{"checkpoint_dir_name": n} for n in
                                       ("checkpoint_e0000_s00000004", "checkpoint_e0000_s00000002")],
                "latest_checkpoint_result": {"checkpoint_dir_name": "checkpoint_e0000_s00000004"}}
    (tmp_path / "run" / RAY_CHECKPOINTS_FILE).write_text(json.dumps(snapshot))
    assert registered_checkpoints(job) == ["checkpoint_e0000_s00000002", "checkpoint_e0000_s00000004"]
    # --resume checks the latest before Ray starts: a file removed by hand is named (Ray Train would restore it)
    from fomm.checkpoint import CheckpointError
    from training.job_checks import check_resume_checkpoint

    resumed = dataclasses.replace(job, resume=True)
    latest = tmp_path / "run" / "checkpoint_e0000_s00000004" / "checkpoint.pth.tar"
    with pytest.raises(CheckpointError, match=rf"^{latest}: checkpoint file not found \(the run's latest registered"):
        check_resume_checkpoint(resumed)
    latest.parent.mkdir()
    latest.write_bytes(b"PK\x03\x04" + bytes(100))  # its start, cut off before the zip directory
    with pytest.raises(CheckpointError, match=rf"^{latest}: not a readable checkpoint \(truncated or corrupt\?\)"):
        check_resume_checkpoint(resumed)


def test_only_a_run_whose_folder_was_there_before_is_said_to_start_again_at_step_0(tmp_path, caplog):
    """Every new Tune trial (resume=True, as all trials) logged "no checkpoint registered yet, the resumed run starts
    at step 0": its folder was looked at after its own MLflow run record had made it."""
    import logging

    from training.job import RAY_CHECKPOINTS_FILE, RUN_FILE, TrainJob, resume_point

    job = TrainJob(config="c.yaml", data=str(tmp_path), storage=str(tmp_path), name="run", resume=True)
    with caplog.at_level(logging.WARNING, logger="training.job"):
        assert resume_point(job) is None and caplog.text == ""  # a new run: nothing to say
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / RUN_FILE).write_text('{"mlflow_run_id": "r", "tracking_uri": "u"}')
        assert resume_point(job) is None  # stopped before its first checkpoint
        assert f"{tmp_path / 'run'}: no checkpoint registered yet, the resumed run starts at step 0" in caplog.text
    snapshot = {"checkpoint_results": [{"checkpoint_dir_name": "checkpoint_e0000_s00000002"}]}
    (tmp_path / "run" / RAY_CHECKPOINTS_FILE).write_text(json.dumps(snapshot))
    assert resume_point(job) == str(tmp_path / "run" / "checkpoint_e0000_s00000002")
    assert resume_point(dataclasses.replace(job, resume=False)) is None


@pytest.mark.parametrize(("record", "text", "why"), [
    ("checkpoint_manager_snapshot.json", '{"checkpoint_results', "JSONDecodeError"),
    ("checkpoint_manager_snapshot.json", '{"checkpoint_results": [{"x": 1}]}', "KeyError: 'checkpoint_dir_name'"),
    ("fomm_run.json", "[1]", "TypeError: a JSON list, not an object"),
    ("checkpoint_e0000_s00000002/train_state.json", '"text"', "TypeError: a JSON str, not an object")])
def test_a_damaged_record_a_resumed_run_reads_is_named_before_ray_starts(tmp_path, record, text, why):
    """Each was a traceback: the driver's (Ray Train's snapshot, the MLflow run record), or every worker's as it
    restored the checkpoint's train state, four restarts over."""
    from fomm.checkpoint import CheckpointError
    from training.job import RAY_CHECKPOINTS_FILE, TrainJob
    from training.job_checks import check_resume_checkpoint

    job = TrainJob(config="c.yaml", data=str(tmp_path), storage=str(tmp_path), name="run", resume=True)
    folder = tmp_path / "run" / "checkpoint_e0000_s00000002"
    folder.mkdir(parents=True)
    (tmp_path / "run" / RAY_CHECKPOINTS_FILE).write_text(json.dumps(
        {"checkpoint_results": [{"checkpoint_dir_name": folder.name}]}))
    (tmp_path / "run" / record).write_text(text)
    with pytest.raises(CheckpointError, match=rf"^{tmp_path / 'run' / record}: damaged \({why}.*, a record this run "
                                              r"resumes from: put it back, or train a new run with another --name$"):
        check_resume_checkpoint(job)
