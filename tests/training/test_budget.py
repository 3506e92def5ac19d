"""The learning-rate schedule over a run's budget: milestones at fractions of max_steps / max_minutes."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from fomm.config.schema import load_config
from fomm.train_step import build_train_state, end_epoch
from training.job import TrainJob
from training.loop import Budget, lr_factor


def test_milestones_decay_at_their_fraction_of_the_budget():
    # the original's vox-256: 100 epochs, decays after 60 and 90
    assert lr_factor(0.0, (60, 90), 100) == 1.0
    assert lr_factor(0.5999, (60, 90), 100) == 1.0
    assert lr_factor(0.6, (60, 90), 100) == pytest.approx(0.1)
    assert lr_factor(0.8999, (60, 90), 100) == pytest.approx(0.1)
    assert lr_factor(0.9, (60, 90), 100) == pytest.approx(0.01)
    assert lr_factor(1.0, (60, 90), 100) == pytest.approx(0.01)
    # demo-64: 12 epochs, decays after 7 and 10 → at 7/12 and 10/12 of the budget
    assert lr_factor(7 / 12 - 1e-9, (7, 10), 12) == 1.0 and lr_factor(7 / 12, (7, 10), 12) == pytest.approx(0.1)
    assert lr_factor(0.5, (), 12) == 1.0


def test_budget_fraction_by_steps_time_or_whichever_is_further():
    by_steps = Budget(max_steps=200, seconds=None, started_at=1000.0)
    assert by_steps.fraction(50, now=5000.0) == 0.25  # time does not count without max_minutes
    by_time = Budget(max_steps=None, seconds=600.0, started_at=1000.0)
    assert by_time.fraction(10**6, now=1150.0) == 0.25
    assert by_time.fraction(0, now=999.0) == 0.0  # a clock before the start is no progress
    assert by_time.fraction(0, now=2000.0) == 1.0  # past the deadline: capped
    both = Budget(max_steps=100, seconds=600.0, started_at=1000.0)
    assert both.fraction(30, now=1060.0) == 0.3 and both.fraction(10, now=1300.0) == 0.5
    assert Budget(max_steps=None, seconds=None, started_at=0.0).fraction(5, now=10.0) == 0.0


def test_a_resubmitted_run_spreads_the_rest_of_its_schedule_over_the_new_budget():
    # the first submission stopped at 40% of its budget; the new 10 minutes cover the remaining 60%
    resumed = Budget(max_steps=None, seconds=600.0, started_at=2000.0, offset=0.4)
    assert resumed.fraction(0, now=2000.0) == pytest.approx(0.4)
    assert resumed.fraction(0, now=2300.0) == pytest.approx(0.7)
    assert resumed.fraction(0, now=2600.0) == pytest.approx(1.0)


def test_scaling_sets_every_optimiser_from_its_config_rate_whatever_the_epoch_schedule_did(tiny_config_path):
    cfg = load_config(tiny_config_path)
    tp = dataclasses.replace(cfg.train_params, epoch_milestones=(1,), lr_generator=2e-4, lr_kp_detector=3e-4,
                             lr_discriminator=5e-4)
    torch.manual_seed(0)
    state = build_train_state(cfg.model_params, tp)
    end_epoch(state)  # the epoch schedule's decay
    assert state.learning_rates()["lr_generator"] == pytest.approx(2e-5)
    state.scale_learning_rates(1.0)
    assert state.learning_rates() == pytest.approx({"lr_generator": 2e-4, "lr_kp_detector": 3e-4,
                                                    "lr_discriminator": 5e-4})
    state.scale_learning_rates(0.01)
    assert state.learning_rates() == pytest.approx({"lr_generator": 2e-6, "lr_kp_detector": 3e-6,
                                                    "lr_discriminator": 5e-6})


def test_job_checks_the_schedule_name_and_that_a_budget_exists():
    assert TrainJob(config="c", data="d", storage="s", lr_schedule="budget", max_minutes=5).lr_schedule == "budget"
    with pytest.raises(ValueError, match="^--lr-schedule cosine: expected one of epochs, budget$"):
        TrainJob(config="c", data="d", storage="s", lr_schedule="cosine", max_steps=5)
    with pytest.raises(ValueError, match="^--lr-schedule budget needs a budget: set --max-steps and/or --max-minutes$"):
        TrainJob(config="c", data="d", storage="s", lr_schedule="budget")


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../up", "", "x y"])
def test_a_run_name_is_one_folder_under_storage(name):
    """`--name ..` passed the character rule and put the run's folder above --storage."""
    with pytest.raises(ValueError, match=rf"^--name {re.escape(name)}: use letters, digits, '.', '_' and '-' only, "
                                         r"not only dots \(it names a folder under --storage\)$"):
        TrainJob(config="c", data="d", storage="s", name=name)
    assert TrainJob(config="c", data="d", storage="s", name="run.v2_a-1").run_name == "run.v2_a-1"
