"""Resource requests are checked against what there is, naming the flag, before a run exists: no job waits forever."""

from __future__ import annotations

import dataclasses
import os

import pytest

from services.cli import UserError
from training.job import TrainJob
from training.job_checks import local_room


def test_workers_and_gpus_a_machine_does_not_have_are_refused_before_ray(monkeypatch) -> None:
    import torch

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    with pytest.raises(UserError, match=r"^--gpus-per-worker 1 × --workers 2: this machine has 0 GPUs"):
        local_room(TrainJob(config="c", data="d", storage="s", gpus_per_worker=1, workers=2))
    with pytest.raises(UserError, match=r"^--workers 5: this machine has 4 CPUs"):
        local_room(TrainJob(config="c", data="d", storage="s", workers=5))
    local_room(TrainJob(config="c", data="d", storage="s"))  # CPU training asks for none
    local_room(TrainJob(config="c", data="d", storage="s", gpus_per_worker=1, ray_address="ray://head:10001"))
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # a cluster's GPUs are checked once connected
    local_room(TrainJob(config="c", data="d", storage="s", gpus_per_worker=1))


def test_requests_the_cluster_can_never_grant_are_refused(monkeypatch) -> None:
    import ray

    from services.ray_start import actor_device, check_device_room, check_room

    nodes = [{"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}, {"Alive": True, "Resources": {"CPU": 2.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]  # a dead node grants nothing
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    check_room("--cpus-per-worker", "CPU", 2, 3)  # 4 + 2 CPUs hold three 2-CPU workers
    with pytest.raises(UserError, match=r"^--gpus-per-worker 2: no node of the Ray cluster has 2 GPU \(the largest "
                                        r"has 1\)"):
        check_room("--gpus-per-worker", "GPU", 2, 1)
    with pytest.raises(UserError, match=r"^--cpus-per-worker 2 × 4 workers: the Ray cluster has 6 CPU in all"):
        check_room("--cpus-per-worker", "CPU", 2, 4)
    with pytest.raises(UserError, match="largest has 4"):
        check_room("--num-cpus", "CPU", 4.5)
    check_device_room("cuda:1")  # one GPU for the actor, which sees it as its cuda
    check_device_room("cpu")
    nodes[0]["Resources"].pop("GPU")
    with pytest.raises(UserError, match=r"^--device cuda:1 \(one GPU per actor\): no node of the Ray cluster has 1 "
                                        r"GPU \(the largest has 0\); the job would wait forever$"):
        check_device_room("cuda:1")
    assert [actor_device(d) for d in ("cpu", "cuda", "cuda:1", "mps")] == ["cpu", "cuda", "cuda", "mps"]

    import evaluation.ray_jobs as ray_jobs  # a cluster joined: one 4-CPU node (the one above, alone alive)

    nodes[1]["Alive"] = False
    monkeypatch.setattr(ray_jobs, "ensure_ray", lambda *args, **kwargs: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})
    ray_jobs.init_ray("head:6379", 2, 3.0)  # an actor of 3 CPUs and the read task's 1 fit
    with pytest.raises(UserError, match=r"^--cpus-per-worker 4: an evaluation actor and the task reading its clips "
                                        r"need 5 CPUs, and the Ray cluster has 4; the job would wait forever$"):
        ray_jobs.init_ray("head:6379", 2, 4.0)


@pytest.mark.ray
def test_gpu_actors_on_the_clusters_cpu_nodes_are_refused_as_the_stage_joins(ray_local) -> None:
    """`evaluate`/`benchmark --device cuda` with workers on the suite's cluster, which has no GPU: the actors asked
    for none, landed on CPU nodes and died in their constructor (a traceback, exit 1); now each asks for one, and
    the stage is refused as it joins the cluster."""
    from evaluation.ray_jobs import init_ray

    init_ray(None, 2, 1.0, "cpu")
    with pytest.raises(UserError, match=r"^--device cuda \(one GPU per actor\): no node of the Ray cluster has 1 GPU "
                                        r"\(the largest has 0\); the job would wait forever$"):
        init_ray(None, 2, 1.0, "cuda")


@pytest.mark.ray
def test_a_driver_joining_a_cluster_hands_its_settings_to_the_workers(ray_head) -> None:
    """A sweep's trials read $FOMM_ROOM_WAIT_S where their trainers start: on a cluster joined with --ray-address
    they had their node's environment, not the driver's. A path such as $FOMM_VGG19_WEIGHTS stays the driver's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = ("import os, ray; from services.ray_start import ensure_ray; ensure_ray(os.environ['ADDRESS']); "
              "print(ray.get(ray.remote(lambda: [os.environ.get(k) for k in ('FOMM_ROOM_WAIT_S', "
              "'FOMM_VGG19_WEIGHTS')]).remote()))")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "ADDRESS": ray_head["address"], "FOMM_ROOM_WAIT_S": "7", "FOMM_VGG19_WEIGHTS": "/here/vgg19.pth",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # the driver on loopback, where the head listens
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip().splitlines()[-1:] == ["['7', None]"], done.stderr[-3000:]


def test_a_run_that_cannot_start_is_refused_before_ray(tmp_path, tiny_config_path) -> None:
    from fomm.config.schema import load_config
    from training.job_checks import check_plan

    cfg = load_config(tiny_config_path)
    job = TrainJob(config=str(tiny_config_path), data="d", storage=str(tmp_path), name="run")
    check_plan(job, cfg)
    (tmp_path / "run").mkdir()  # an earlier run of that name
    with pytest.raises(UserError, match=r"^--name run: .*/run: a run of this name exists; pass --resume"):
        check_plan(job, cfg)
    check_plan(dataclasses.replace(job, resume=True), cfg)
    odd = dataclasses.replace(job, name="odd", workers=cfg.train_params.batch_size + 1)
    with pytest.raises(UserError, match=r"^--workers \d+: .*must divide evenly over the workers"):
        check_plan(odd, cfg)


def test_a_validation_split_asked_for_by_name_must_exist(tmp_path, tiny_config_path) -> None:
    from preprocessing.synthetic import write_synthetic_shards
    from training.job_checks import check_inputs

    shards = write_synthetic_shards(tmp_path / "shards", num_videos=4, size=32, num_frames=6, test_every=2)
    job = TrainJob(config=str(tiny_config_path), data=str(shards), storage=str(tmp_path / "st"),
                   tracking_uri=f"sqlite:///{tmp_path}/m.db")
    check_inputs(job)  # the default split: there
    check_inputs(dataclasses.replace(job, val_split="train"))
    with pytest.raises(UserError, match=r"^--val-split nope: no clips of that split in --data"):
        check_inputs(dataclasses.replace(job, val_split="nope"))
    check_inputs(dataclasses.replace(job, val_split="nope", num_val_clips=0))  # no validation asked for
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]  # the checks wrote nothing


def test_vgg_weights_the_perceptual_loss_cannot_load_are_refused_before_ray(tmp_path, tiny_config_path,
                                                                            monkeypatch) -> None:
    """A wrong $FOMM_VGG19_WEIGHTS failed in every worker after Ray started (4 restarts, 51 lines, exit 1)."""
    import torch

    from fomm.config.schema import load_config
    from fomm.vgg import Vgg19
    from training.job_checks import check_vgg_weights

    cfg = load_config(tiny_config_path)  # perceptual weights of 10
    (tmp_path / "vgg.pth").write_bytes(b"")
    torch.save({f"features.{k}": v for k, v in Vgg19().features.state_dict().items()}, tmp_path / "ok.pth")
    for given, why in ((tmp_path / "nothing.pth", "VGG-19 weights not found"), (tmp_path, "VGG-19 weights not found"),
                       (tiny_config_path, "not a checkpoint"), (tmp_path / "vgg.pth", "")):
        monkeypatch.setenv("FOMM_VGG19_WEIGHTS", str(given))
        with pytest.raises(UserError, match=rf"^\$FOMM_VGG19_WEIGHTS: {given}: .*{why}"):
            check_vgg_weights(cfg)
    monkeypatch.setenv("FOMM_VGG19_WEIGHTS", str(tmp_path / "ok.pth"))
    check_vgg_weights(cfg)
    monkeypatch.setenv("FOMM_VGG19_WEIGHTS", str(tmp_path / "nothing.pth"))  # a config without the perceptual term
    check_vgg_weights(dataclasses.replace(cfg, train_params=dataclasses.replace(
        cfg.train_params, loss_weights=dataclasses.replace(cfg.train_params.loss_weights, perceptual=(0,) * 5))))


def test_a_bad_wait_for_room_is_refused_before_ray(tmp_path, tiny_config_path, synthetic_shards,
                                                   monkeypatch) -> None:
    """$FOMM_ROOM_WAIT_S (how long a run short of CPUs waits for the cluster to grow) is checked with the inputs,
    not once the workers start."""
    from training.job_checks import check_inputs, room_wait_s

    job = TrainJob(config=str(tiny_config_path), data=str(synthetic_shards), storage=str(tmp_path / "st"),
                   tracking_uri=f"sqlite:///{tmp_path}/m.db")
    for text, problem in (("abc", "expected a number, got 'abc'"), ("-5", "must be ≥ 0, got -5")):
        monkeypatch.setenv("FOMM_ROOM_WAIT_S", text)
        with pytest.raises(UserError, match=rf"^\$FOMM_ROOM_WAIT_S: {problem}$"):
            check_inputs(job)
    monkeypatch.delenv("FOMM_ROOM_WAIT_S")
    assert room_wait_s() == 600.0
    assert list(tmp_path.iterdir()) == []


def test_a_second_process_training_the_same_run_is_refused_and_a_killed_ones_lock_is_free(tmp_path,
                                                                                           tiny_config_path) -> None:
    """Two `train` (or `tune`) of one --name at once (another terminal, a Kubernetes Job retried while its first pod
    still trains) wrote checkpoints into one folder; the second is refused before Ray starts. A holder killed by SIGKILL
    leaves no lock behind, and a run that ends leaves no lock file, nor a --storage it made and left empty."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import ray

    from training.job import run_lock
    from training.trainer import fit

    job = TrainJob(config=str(tiny_config_path), data="d", storage=str(tmp_path / "new" / "st"), name="run",
                   resume=True)
    with run_lock(job):
        lock = tmp_path / "new" / "st" / ".run.lock"
        with pytest.raises(UserError, match=rf"^--name run: a run of this name is training now \(pid {os.getpid()} "
                                            rf"on {socket.gethostname()} since [\d: -]+; {lock}\): wait for it to end, "
                                            r"or choose another --name$"):
            fit(job)
        assert not ray.is_initialized()
    assert list(tmp_path.iterdir()) == []  # the lock file and the folders made for it went
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from training.job import TrainJob, run_lock; "
         f"job = TrainJob(config='c', data='d', storage={str(tmp_path)!r}, name='run'); "
         "lock = run_lock(job); lock.__enter__(); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UserError, match="a run of this name is training now"), run_lock(
                dataclasses.replace(job, storage=str(tmp_path))):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
    with run_lock(dataclasses.replace(job, storage=str(tmp_path))):
        assert (tmp_path / ".run.lock").read_text().startswith(f"pid {os.getpid()} ")
        from tuning.options import SweepJob
        from tuning.spaces import SearchSpace
        from tuning.sweep import run_sweep

        space = SearchSpace.from_dict({"space": {"train_params.lr_generator": {"choice": [1e-4]}}})
        with pytest.raises(UserError, match="^--name run: a run of this name is training now"):  # a sweep alike
            run_sweep(SweepJob(base=dataclasses.replace(job, storage=str(tmp_path)), space=space))
        assert not ray.is_initialized()


STOPPED_TRIAL = """
import os, sys, time
import ray, ray.train, ray.train.torch
from training.job import TrainJob
from training.trainer import ensure_training_ray

ensure_training_ray(TrainJob(config="c", data="d", storage=sys.argv[1]))


def trains(config: dict) -> None:  # says it runs, then trains for ten minutes
    open(config["started"], "w").close()
    time.sleep(600)


@ray.remote(num_cpus=0)
class Trial:  # what a Tune trial is: an actor whose method drives a Ray Train run
    def fit(self, storage: str) -> None:
        ray.train.torch.TorchTrainer(trains, train_loop_config={"started": storage + ".started"},
                                     scaling_config=ray.train.ScalingConfig(num_workers=1),
                                     run_config=ray.train.RunConfig(storage_path=storage)).fit()


def workers_groups() -> list[str]:
    return [g for g, info in ray.util.placement_group_table().items()
            if info["state"] != "REMOVED" and info["bundles"] == {0: {"CPU": 1.0}}]


trial = Trial.remote()
trial.fit.remote(sys.argv[1])
deadline = time.monotonic() + 120
while not os.path.exists(sys.argv[1] + ".started") and time.monotonic() < deadline:
    time.sleep(0.2)
group = workers_groups()[0]
ray.kill(trial)  # Tune's end of a trial (ASHA's stop): its process ends, its Train controller with it


def freed() -> tuple[str, bool]:  # the group's state, and whether every CPU of the cluster is free
    return ray.util.placement_group_table()[group]["state"], ray.available_resources().get("CPU", 0) == \
        ray.cluster_resources()["CPU"]


deadline = time.monotonic() + 30
while freed() != ("REMOVED", True) and time.monotonic() < deadline:
    time.sleep(0.2)
print(*freed(), flush=True)
"""


@pytest.mark.ray
def test_a_train_run_whose_driver_was_killed_frees_its_workers_cpus_on_a_local_ray(tmp_path, repo_root) -> None:
    """A Tune trial that Tune ends (ASHA's stop) takes its Train controller with it: the workers' placement group,
    which Ray keeps while the sweep's job lives, is Ray Train's cleaner's to remove, and the cleaner asks the
    dashboard whether the controller lives. The local Ray ran without one: the group stayed, holding a CPU, and the sweep's next trial
    waited forever for its data (a local `tune` over a grid of 5 hung in its third trial)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", STOPPED_TRIAL, str(tmp_path / "runs")], capture_output=True,
                          text=True, timeout=240, env=env, cwd=repo_root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["REMOVED", "True"]  # every CPU of the local training Ray is free again


@pytest.mark.ray
def test_an_evaluation_actor_as_large_as_the_machine_leaves_its_clips_a_cpu_to_be_read(repo_root) -> None:
    """`evaluate --cpus-per-worker N` on an N-CPU machine: its one actor took every CPU of the local Ray, and the
    task reading the clips waited for one forever (by hand: the run hung; so with 1.5 on 2 CPUs). The local Ray
    holds the actor and the read at once; a cluster without room for both is refused as the stage joins it
    (test_requests_the_cluster_can_never_grant_are_refused)."""
    import subprocess
    import sys

    script = ("import os, ray; from evaluation.ray_jobs import init_ray; init_ray(None, 1, float(os.cpu_count())); "
              "print(ray.cluster_resources()['CPU'])")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                          cwd=repo_root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.split()[-1]) == os.cpu_count() + 1  # the actor's CPUs and the read task's one
