"""The Ray-free parts of the worker loop: batches, validation L1, timing, config overrides."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from torch import nn

from fomm.config.loader import ConfigError
from fomm.config.schema import load_config
from training.job import TrainJob
from training.loop import (
    StepClock,
    reconstruction_sums,
    to_model_batch,
    validate,
)


def test_batches_become_float_images_in_unit_range():
    raw = {"source": torch.full((2, 4, 5, 3), 255, dtype=torch.uint8), "driving": torch.zeros(2, 4, 5, 3, dtype=torch.uint8)}
    raw["source"][0, 1, 2] = torch.tensor([0, 51, 102], dtype=torch.uint8)
    batch = to_model_batch(raw, channels_last=True)
    assert batch["source"].shape == (2, 3, 4, 5) and batch["source"].dtype == torch.float32
    assert batch["source"][0, :, 1, 2].tolist() == pytest.approx([0.0, 0.2, 0.4])
    assert batch["driving"].max() == 0 and batch["source"].is_contiguous(memory_format=torch.channels_last)


class _CopySource(nn.Module):
    """A 'generator' that predicts the source frame, so its L1 is the copy-the-source baseline."""

    def prepare_source(self, source, kp_source):  # noqa: ANN001
        return source

    def forward(self, source_image, kp_driving, kp_source, source, outputs):  # noqa: ANN001
        return {"prediction": source.expand(kp_driving["value"].shape[0], -1, -1, -1)}


class _NoKeypoints(nn.Module):
    def forward(self, x):  # noqa: ANN001
        return {"value": torch.zeros(x.shape[0], 1, 2)}


def test_reconstruction_l1_by_hand():
    frames = np.zeros((2, 3, 2, 2, 3), np.uint8)  # 2 clips × 3 frames of 2×2
    frames[0, 1] = 51  # clip 0, frame 1: |0.2 − 0| everywhere
    frames[1, 2] = 255  # clip 1, frame 2: |1 − 0|
    l1, copy_source, count = reconstruction_sums(_NoKeypoints(), _CopySource(), frames).tolist()
    assert count == 6
    assert l1 == pytest.approx(0.2 + 1.0) and copy_source == pytest.approx(1.2)
    metrics = validate(_NoKeypoints(), _CopySource(), [{"frames": frames}])
    assert metrics["val_l1"] == pytest.approx(1.2 / 6) and metrics["val_l1_ratio"] == pytest.approx(1.0)
    assert validate(_NoKeypoints(), _CopySource(), []) == {}


def test_validation_leaves_modules_in_training_mode():
    kp, gen = _NoKeypoints(), _CopySource()
    reconstruction_sums(kp, gen, np.zeros((1, 2, 2, 2, 3), np.uint8))
    assert kp.training and gen.training


def test_validation_l1_is_the_evaluation_l1_on_the_same_model_and_clip(tiny_config_path):
    from evaluation.metrics import l1_per_frame
    from evaluation.reconstruction import ModelSource, reconstruct_video

    model = ModelSource.resolve(tiny_config_path, None).load()
    clip = np.random.default_rng(3).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    evaluation_l1 = l1_per_frame(clip, reconstruct_video(model, clip, batch_size=4, precision="fp32")["prediction"])
    model.generator.train()  # validation runs on training-mode modules and leaves them so
    metrics = validate(model.kp_detector, model.generator, [{"frames": clip[None]}])
    assert model.generator.training
    assert metrics["val_l1"] == pytest.approx(float(evaluation_l1.mean()), rel=1e-6)
    assert metrics["val_l1_copy_source"] == pytest.approx(float(l1_per_frame(clip, clip[:1].repeat(6, 0)).mean()))


def test_step_clock_splits_waiting_from_computing():
    def slow_batches():
        for _ in range(3):
            time.sleep(0.05)
            yield {}

    clock = StepClock()
    for _ in clock.timed(slow_batches()):
        time.sleep(0.05)
        step = clock.step_done(4, world_size=2)
        assert step["data_wait_s"] == pytest.approx(0.05, abs=0.04)
    summary = clock.summary(world_size=2)
    assert summary["epoch_data_wait_fraction"] == pytest.approx(0.5, abs=0.2)
    assert summary["epoch_samples_per_s"] == pytest.approx(2 * summary["epoch_samples_per_s_per_worker"])


def test_overrides_change_the_config_and_unknown_keys_name_their_path(tiny_config_path):
    job = TrainJob(config=str(tiny_config_path), data="d", storage="s", num_epochs=7,
                   overrides={"train_params": {"loss_weights": {"perceptual": [1, 2, 0, 0, 0]}}})
    cfg = job.load_config()
    assert cfg.train_params.loss_weights.perceptual == (1, 2, 0, 0, 0)
    assert cfg.train_params.num_epochs == 7
    assert cfg.model_params == load_config(tiny_config_path).model_params
    with pytest.raises(ConfigError, match="train_params.loss_weights.perceptul"):
        dataclasses.replace(job, overrides={"train_params": {"loss_weights": {"perceptul": [1]}}}).load_config()


def test_job_checks_its_arguments(tiny_config_path):
    job = TrainJob(config=str(tiny_config_path), data="d", storage="s")
    assert job.run_name == "tiny-64" and not job.use_gpu
    with pytest.raises(ValueError, match="workers"):
        TrainJob(config="c", data="d", storage="s", workers=0)
    with pytest.raises(ValueError, match="^--name a/b: use letters"):
        TrainJob(config="c", data="d", storage="s", name="a/b")
