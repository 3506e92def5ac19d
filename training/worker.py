"""The worker side of FOMM on Ray Train (the driver's is `training.trainer`): one DDP worker's loop, its
checkpoints (original format, every `checkpoint_freq` epochs and `checkpoint_every_steps` steps) and progress,
MLflow from rank 0."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn

from fomm.config.schema import FommConfig
from fomm.precision import autocast_dtype, precision_name, use_channels_last
from fomm.train_step import build_train_state, end_epoch, start_from, to_channels_last, train_step
from services import ray_start, s3_retries, storage
from services.atomic import scratch_dir
from training import loop
from training.data import DataError
from training.job import CHECKPOINT_FILE, STATE_FILE, TrainJob, read_init_checkpoint, run_path
from training.sync_bn import convert_sync_batchnorm, world_size

DIVERGED_FILE = "diverged.json"  # beside them, from rank 0: the step whose loss turned NaN/inf, ending the run
NO_SCORE = 1e9  # val_l1 of a checkpoint taken before any validation (ranked last by CheckpointConfig)


def parallelize(module: nn.Module, device: torch.device) -> nn.Module:
    """The one distributed edge: synchronised batch norm, then DDP through `ray.train.torch.prepare_model`."""
    module = convert_sync_batchnorm(module, device)
    return ray.train.torch.prepare_model(module, move_to_device=device,
                                         parallel_strategy_kwargs={"find_unused_parameters": False})


@dataclass
class Progress:
    """Counters the original checkpoint format lacks; saved beside it as train_state.json."""

    epoch_step: int = 0  # optimiser steps already done in the current (unfinished) epoch
    val_l1: float | None = None
    samples_seen: int = 0
    budget_fraction: float = 0.0  # of the budget spent (lr_schedule "budget")
    budget_offset: float = 0.0  # of it spent by earlier submissions, when this one started
    started_at: float | None = None  # when the submission that wrote this began
    restarts: int = 0  # worker-group restarts from a checkpoint after a failure (a lost worker or node)


@contextlib.contextmanager
def private_checkpoint_dir(checkpoint: ray.train.Checkpoint) -> Iterator[str]:
    """A local directory holding the checkpoint, read by this process alone: in place, or downloaded into a
    temporary directory of its own (`Checkpoint.as_directory` shares one download per node, and a worker arriving
    after it finished downloads again into the files its neighbour reads: a corrupt zip archive on restore)."""
    if checkpoint.filesystem.type_name == "local":
        yield checkpoint.path
        return
    with scratch_dir("restore") as tmp:
        yield checkpoint.to_directory(tmp)


class WorkerLoop:
    """The state of one DDP worker between reports; `run()` is the whole per-worker training."""

    def __init__(self, config: dict) -> None:
        self.job: TrainJob = config["job"]
        self.cfg: FommConfig = config["fomm"]
        tp = self.tp = self.cfg.train_params
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        if self.device.type == "cpu":  # the worker's CPU reservation, whatever OMP_NUM_THREADS says
            torch.set_num_threads(max(1, int(self.job.cpus_per_worker)))
        self.batch_size = tp.batch_size // self.world  # the config's batch is global, as over the original's GPUs
        self.steps_per_epoch = max(1, config["samples_per_epoch"] // self.world // self.batch_size)

        torch.manual_seed(tp.seed)  # identical initial weights everywhere (DDP also broadcasts rank 0's)
        self.state = build_train_state(self.cfg.model_params, tp, device=self.device)
        checkpoint, saved = ray.train.get_checkpoint(), {}  # saved: the checkpoint's STATE_FILE
        self.restored = checkpoint is not None
        if checkpoint is not None:
            with private_checkpoint_dir(checkpoint) as d:
                self.state.load(Path(d) / CHECKPOINT_FILE)
                if (Path(d) / STATE_FILE).is_file():
                    saved = json.loads((Path(d) / STATE_FILE).read_text())
        elif self.job.init_from is not None:  # a new run from another checkpoint's networks (fine-tuning)
            nets = self.state
            start_from(read_init_checkpoint(self.job, config["tracking_uri"]), self.job.init_from, nets.generator,
                       nets.kp_detector, nets.discriminator)
        self.progress = Progress(**{f.name: saved[f.name] for f in dataclasses.fields(Progress) if f.name in saved})
        started_at = config["started_at"]
        if self.progress.started_at == started_at:  # restored: this submission failed, came back
            self.progress.restarts += 1  # (two failures before the next checkpoint count once)
        else:  # a new submission (or a fresh run): its time budget covers what the checkpoint had not spent
            self.progress.budget_offset = self.progress.budget_fraction
        self.progress.started_at = started_at
        torch.manual_seed(tp.seed + 1 + self.rank + 7919 * self.state.step)  # per-worker warps, fresh on resume
        self.autocast = autocast_dtype(tp.bf16, self.device)  # this worker's device decides "auto"
        self.channels_last = use_channels_last(tp.channels_last, self.autocast)
        if self.channels_last:
            to_channels_last(self.state)
        self.generator_full = parallelize(self.state.generator_full, self.device)
        self.discriminator_full = (parallelize(self.state.discriminator_full, self.device)
                                   if self.state.use_gan else None)
        self.tracker = None
        if self.rank == 0:
            from services.tracking.run import Tracker

            self.tracker = Tracker(tracking_uri=config["tracking_uri"], run_id=config["mlflow_run_id"])
            self.tracker.set_tags({"precision": precision_name(self.autocast)})
        self.train_shard = ray.train.get_dataset_shard("train")
        self.val_shard = ray.train.get_dataset_shard("val") if config.get("has_val") else None
        self.last_checkpoint_step = self.state.step if self.restored else -1
        self.stopped = self.job.max_steps is not None and self.state.step >= self.job.max_steps
        self.diverged_at: int | None = None  # the step whose loss was NaN or inf: training stops, nothing kept of it
        seconds = 60 * self.job.max_minutes if self.job.max_minutes is not None else None
        self.deadline = started_at + seconds if seconds is not None else None
        self.budget = None  # the budget the learning rates follow (lr_schedule "budget")
        if self.job.lr_schedule == "budget":
            self.budget = loop.Budget(self.job.max_steps, seconds, started_at, self.progress.budget_offset)
            self.progress.budget_fraction = self.budget.fraction(self.state.step, self.agree({})[1])
        self.clock = loop.StepClock()
        self.retries = s3_retries.counting_retries().__enter__()  # counted from here to the process's end
        self.logged_through = -1
        if self.restored and self.tracker is not None:
            # the steps the failed attempt logged after its checkpoint are not logged again when they are redone
            self.logged_through = self.tracker.last_step("total") or -1
            self.tracker.log_metrics({"restored_from_step": self.state.step, "restarts": self.progress.restarts},
                                     step=self.state.step)

    def agree(self, values: dict[str, float]) -> tuple[bool, float]:
        """In one collective: whether every worker's losses of this step are finite, and rank 0's time.time(); all
        workers get the same answer, so all stop after the same step and follow the same learning rates."""
        finite, now = all(math.isfinite(v) for v in values.values()), time.time()  # the losses are floats already
        if world_size() > 1:  # one worker needs no tensor, no device round trip
            both = torch.tensor([float(not finite), now if self.rank == 0 else 0.0], dtype=torch.float64,
                                device=self.device)
            dist.all_reduce(both, op=dist.ReduceOp.MAX)
            finite, now = both[0].item() == 0.0, both[1].item()
        return finite, now

    def check_stop(self, now: float) -> bool:
        """After a step: max_steps reached, or (`now`: rank 0's clock, shared by all) the time budget spent."""
        if self.budget is not None:
            self.progress.budget_fraction = self.budget.fraction(self.state.step, now)
        if self.job.max_steps is not None and self.state.step >= self.job.max_steps:
            self.stopped = True
        elif self.deadline is not None:
            self.stopped = now > self.deadline  # every worker stops after the same step
        return self.stopped

    def _follow_schedule(self) -> None:
        """Before a step: with lr_schedule "budget", the rates for the fraction of the budget spent (else the
        epochs' schedule has set them); batch norm frozen once freeze_batch_norm_epoch is reached."""
        tp, state, spent = self.tp, self.state, self.progress.budget_fraction
        if self.budget is not None:
            state.scale_learning_rates(loop.lr_factor(spent, tp.epoch_milestones, tp.num_epochs))
        if tp.freeze_batch_norm_epoch is not None:
            state.batch_norm_frozen = (  # the same rule as the decays, so a freeze at a milestone lands with it
                loop.epoch_reached(tp.freeze_batch_norm_epoch, spent, tp.num_epochs)
                if self.budget is not None else state.epoch >= tp.freeze_batch_norm_epoch)

    def validate(self) -> dict[str, float]:
        if self.val_shard is None:
            return {}
        metrics = loop.validate(self.state.kp_detector, self.state.generator,
                                self.val_shard.iter_batches(batch_size=4, batch_format="numpy"), self.device)
        if metrics:
            self.progress.val_l1 = metrics["val_l1"]
        return metrics

    def report(self, metrics: dict[str, Any], with_checkpoint: bool, log: bool = True) -> None:
        """ray.train.report on every worker (it is a barrier), rank 0 attaching the checkpoint; `log` also sends
        the metrics to MLflow."""
        state, progress = self.state, self.progress
        metrics = {**metrics, "weights_max_diff": loop.max_weight_difference(
            {"kp_detector": state.kp_detector, "generator": state.generator}), "world_size": self.world,
            "s3_retries": self.retries.count}  # this worker's so far (rank 0 uploads the checkpoints)
        if self.tracker is not None and state.step > self.logged_through:
            logged = metrics if log else {"weights_max_diff": metrics["weights_max_diff"]}
            self.tracker.log_metrics({k: v for k, v in logged.items() if k != "world_size"}, step=state.step)
        metrics.update(epoch=state.epoch, step=state.step,
                       val_l1=progress.val_l1 if progress.val_l1 is not None else NO_SCORE)
        if not (with_checkpoint and self.rank == 0):
            ray.train.report(metrics)
        else:
            with scratch_dir("checkpoint") as tmp:
                payload = {"epoch": state.epoch, "step": state.step, **dataclasses.asdict(progress)}
                for name, data in ((CHECKPOINT_FILE, state.to_bytes()), ("config.yaml", self.cfg.to_yaml().encode()),
                                   (STATE_FILE, json.dumps(payload, indent=1).encode())):
                    storage.write_bytes(str(Path(tmp) / name), data)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                                 checkpoint_dir_name=f"checkpoint_e{state.epoch:04d}_s{state.step:08d}")
        if with_checkpoint:
            self.last_checkpoint_step = state.step

    def run_epoch(self) -> bool:
        """Train over this worker's shard of one epoch; False when stopped by max_steps before its end."""
        tp, job, state, progress = self.tp, self.job, self.state, self.progress
        cap = self.steps_per_epoch if progress.epoch_step else float("inf")  # resumed mid-epoch: the steps owed
        if progress.epoch_step >= cap:
            return True
        clock = self.clock = loop.StepClock()
        batches = self.train_shard.iter_torch_batches(
            batch_size=self.batch_size, drop_last=True, device=self.device, dtypes=torch.uint8,
            local_shuffle_buffer_size=job.shuffle_buffer or 64 * self.batch_size)
        for raw in clock.timed(batches):
            batch = loop.to_model_batch(raw, self.device, self.channels_last)
            self._follow_schedule()
            values, generated = train_step(state, batch, self.generator_full, self.discriminator_full, self.autocast)
            timing = clock.step_done(self.batch_size, self.world)
            progress.epoch_step += 1
            progress.samples_seen += self.batch_size * self.world
            if self.tracker is not None and state.step > self.logged_through:
                frozen = {} if tp.freeze_batch_norm_epoch is None else {"batch_norm_frozen": float(state.batch_norm_frozen)}
                self.tracker.log_metrics({**values, **state.learning_rates(), **timing, **frozen, "epoch": state.epoch},
                                         step=state.step, buffered=True)  # sent every few seconds
                if job.log_images_every and state.step % job.log_images_every == 0:
                    from evaluation.visualize import training_grid

                    self.tracker.log_image(training_grid(batch["source"], batch["driving"], generated,
                                                         generated["kp_source"], generated["kp_driving"],
                                                         self.cfg.visualizer_params),
                                           f"train/step_{state.step:08d}")
            finite, now = self.agree(values)
            if not finite:  # the weights took a NaN/inf step: none of them is worth keeping
                self.diverged_at, self.stopped = state.step, True
                return False
            if self.check_stop(now) or progress.epoch_step >= cap:
                return progress.epoch_step >= cap
            if tp.checkpoint_every_steps and state.step % tp.checkpoint_every_steps == 0:
                self.report({**values, **timing}, with_checkpoint=True, log=False)  # already logged above
        return True

    def run(self) -> None:
        tp, state = self.tp, self.state
        if self.job.validate_at_start and not self.restored:
            metrics = self.validate()
            if self.tracker is not None and metrics:
                self.tracker.log_metrics(metrics, step=0)
        # a budget schedule trains until the budget ends; its milestones sit at fractions of it, not at epochs
        while not self.stopped and (self.budget is not None or state.epoch < tp.num_epochs):
            fresh, step = self.progress.epoch_step == 0, state.step
            if not self.run_epoch():
                break
            if fresh and state.step == step:  # else a budget schedule would wait for steps that never come
                raise DataError(f"{self.job.data}: an epoch gave worker {self.rank} no full batch of "
                                f"{self.batch_size} training pairs (are its frames decodable?)")
            end_epoch(state)
            self.progress.epoch_step = 0
            metrics = {**self.validate(), **self.clock.summary(self.world), "epoch": state.epoch}
            is_last = self.stopped or (self.budget is None and state.epoch >= tp.num_epochs)
            self.report(metrics, with_checkpoint=state.epoch % tp.checkpoint_freq == 0 or is_last)
        if self.diverged_at is not None:  # no checkpoint of NaN weights; the driver fails the run (trainer.fit_plan)
            if self.rank == 0:
                record = {"step": self.diverged_at, "started_at": self.progress.started_at}
                storage.write_bytes(storage.join(run_path(self.job), DIVERGED_FILE), json.dumps(record).encode(),
                                    endpoint=self.job.endpoint)
        elif self.last_checkpoint_step != state.step:  # stopped mid-epoch (max_steps, time): keep what was learned
            self.report({**self.validate(), **self.clock.summary(self.world)}, with_checkpoint=True)
        if self.tracker is not None:
            self.tracker.log_metrics({"restarts": self.progress.restarts}, step=state.step)
            self.tracker.set_tags({"last_step": state.step, "last_epoch": state.epoch})
            self.tracker.drain()  # what an outage held back, before this worker's process ends


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point of each worker (see WorkerLoop)."""
    ray_start.console_without_tracebacks("ray.train")  # a failure's traceback: in the session's logs and the driver's
    WorkerLoop(config).run()
