"""The checks of a training job before Ray starts or anything is written: inputs, the run's plan, the machine's
room, and the checkpoints a run resumes or starts from (read whole, as each worker will)."""

from __future__ import annotations

import os

from evaluation.visualize import check_colormap
from fomm.config.schema import FommConfig, load_config
from services.cli import UserError, field_default, user_input
from services.fields import env_number
from training.job import (
    CHECKPOINT_FILE,
    RUN_FILE,
    STATE_FILE,
    TrainJob,
    read_init_checkpoint,
    registered_checkpoints,
    run_path,
    run_record,
)


def check_resume_checkpoint(job: TrainJob) -> None:
    """The checkpoint a --resume restores is whole: one cut off (a copy that died halfway) would fail every worker
    restart alike, after Ray starts. Its zip directory, at the end, is read: a few KB, also on S3."""
    from fomm.checkpoint import CheckpointError, require_checkpoint
    from services import storage

    run_record(job, RUN_FILE)
    if registered := registered_checkpoints(job):
        run_record(job, registered[-1], STATE_FILE)  # what each worker reads as it restores
        path = storage.join(run_path(job), registered[-1], CHECKPOINT_FILE)
        fs, fs_path = storage.resolve(path, job.endpoint)
        if not fs.isfile(fs_path):  # removed by hand: Ray Train restores its latest registered checkpoint only
            raise CheckpointError(f"{path}: checkpoint file not found (the run's latest registered checkpoint: put "
                                  "it back, or train a new run with another --name)")
        with fs.open(fs_path, "rb") as f:
            require_checkpoint(f, path)


def check_init_checkpoint(job: TrainJob, cfg: FommConfig) -> None:
    """The checkpoint --init-from names is read whole, as each worker will read it, and its generator and kp
    detector fit the config: a CheckpointError naming the file, not a failure in every worker after Ray starts. A
    discriminator that does not fit is said in a note (it trains anew)."""
    from fomm.models import build_networks
    from fomm.train_step import start_from

    state = read_init_checkpoint(job, check=True)  # a models:/ version: looked up and copied here once
    nets = build_networks(cfg.model_params, discriminator=True)
    if why := start_from(state, job.init_from, nets.generator, nets.kp_detector, nets.discriminator):
        # on stdout, with the run's other notes: on stderr it made a second line before any error's
        print(f"note: --init-from: {why}: the discriminator starts from random weights", flush=True)


def check_vgg_weights(cfg: FommConfig) -> None:
    """The VGG-19 weights of the perceptual loss ($FOMM_VGG19_WEIGHTS, else torch hub's cache), where it is on, load
    here as each worker will load them: not a failure in every worker, 4 restarts, after Ray starts."""
    from fomm.vgg import WEIGHTS_ENV, Vgg19, default_weights_path

    if sum(cfg.train_params.loss_weights.perceptual) != 0 and (path := default_weights_path()) is not None:
        try:
            Vgg19(path)
        except (OSError, ValueError) as err:  # missing, a folder, damaged, not VGG-19's
            raise UserError(f"${WEIGHTS_ENV}: {err}") from None


def check_plan(job: TrainJob, cfg: FommConfig, run_folder: bool = True) -> None:
    """What makes a run impossible before anything starts: a batch the workers cannot share, a run folder that
    exists without --resume (`run_folder`: not for a sweep's base job, whose trials have their own); a UserError
    naming the flag."""
    from services import storage

    tp = cfg.train_params
    if tp.batch_size % job.workers:
        raise UserError(f"--workers {job.workers}: {job.config}: train_params.batch_size {tp.batch_size} is the "
                        f"global batch and must divide evenly over the workers")
    if run_folder and storage.exists(run_path(job), job.endpoint) and not job.resume:
        raise UserError(f"--name {job.run_name}: {run_path(job)}: a run of this name exists; pass --resume to "
                        "continue it or --name for a new one")


def check_inputs(job: TrainJob, sweep: bool = False) -> None:
    """Before Ray starts or anything is written: config (with --set), shards, storage, tracking URI, resources and
    the run's plan (`sweep`: the base job of a sweep, whose trials have run folders of their own)."""
    from preprocessing.shard_set import require_shards
    from services import checks
    from services.tracking import store_checks

    checks.existing_file("--config", job.config, "a FOMM YAML")
    base = load_config(job.config)  # a ConfigError names the file and the key
    with user_input("--set" if job.overrides else ""):
        cfg = job.load_config(base)
    shard_set = require_shards("--data", job.data, job.train_split, job.endpoint, cfg.dataset_params.frame_shape)
    # a sweep ranks its trials by val_l1: without held-out clips every trial would score the same placeholder
    if sweep and job.num_val_clips == 0:
        raise UserError("--val-clips 0: a sweep ranks its trials by val_l1 on held-out clips (give 1 or more)")
    # a split asked for by name must exist (the default may be absent: then no validation, except in a sweep)
    if job.num_val_clips > 0 and (sweep or job.val_split != field_default(TrainJob, "val_split")):
        from training.data import clip_index

        if not len(clip_index(shard_set, job.val_split)):
            why = " to rank the sweep's trials by (preprocess with --test-fraction above 0)" if sweep else ""
            raise UserError(f"--val-split {job.val_split}: no clips of that split in --data {job.data}{why}")
    check_colormap(job.config, cfg.visualizer_params)  # not at the first image a worker draws
    checks.writable_storage("--storage", job.storage, job.endpoint)
    checks.not_an_input("--storage", job.storage, {"--data": job.data, "--config": job.config})
    store_checks.tracking_uri("--tracking-uri", job.tracking_uri, experiment=job.experiment)
    local_room(job)
    room_wait_s()  # a bad $FOMM_ROOM_WAIT_S: one line now, not when the workers start
    check_plan(job, cfg, run_folder=not sweep)
    if job.resume and not sweep:
        check_resume_checkpoint(job)
    check_vgg_weights(cfg)
    if job.init_from is not None:  # last: a whole checkpoint read and a model built, after the checks that answer fast
        check_init_checkpoint(job, cfg)


def room_wait_s() -> float:
    """How long a run waits for a cluster short of the CPUs it needs to grow back: $FOMM_ROOM_WAIT_S, else 600."""
    return env_number("FOMM_ROOM_WAIT_S", 600.0)


def local_room(job: TrainJob) -> None:
    """Without a cluster (no --ray-address or $RAY_ADDRESS) the workers run on this machine: one process per CPU
    at most, and the GPUs asked for are its own; checked before Ray (a cluster's are checked once connected)."""
    import torch

    from services.ray_address import cluster_address

    if cluster_address(job.ray_address):
        return
    cpus = os.cpu_count() or 1
    if job.workers > cpus:
        raise UserError(f"--workers {job.workers}: this machine has {cpus} CPUs, one per worker at most (pass "
                        "--ray-address to train on a cluster)")
    have = torch.cuda.device_count()
    if job.gpus_per_worker * job.workers > have:
        raise UserError(f"--gpus-per-worker {job.gpus_per_worker:g} × --workers {job.workers}: this machine has "
                        f"{have} GPU{'s' * (have != 1)} (pass --ray-address to train on a cluster that has them)")
