"""services.ray_start: a driver that leaves a cluster leaves nothing of its job holding the cluster's CPUs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.ray
def test_a_driver_leaving_a_cluster_removes_the_placement_groups_its_job_still_holds(ray_local) -> None:
    """A group whose creator actor is dead stays while its job lives (the leaked one was a Tune trial's Train
    controller's, stopped by Ctrl-C as its workers started); the job's own go as its driver leaves, another
    job's stay."""
    import ray
    from ray.util.placement_group import placement_group

    from services.ray_start import release_placement_groups

    other = subprocess.Popen(  # another job on the cluster: a driver holding a group of its own
        [sys.executable, "-c", "import sys, ray; from ray.util.placement_group import placement_group; "
         f"ray.init(address='{ray_local['address']}', log_to_driver=False); g = placement_group([{{'CPU': 0.1}}]); "
         "ray.get(g.ready()); print(g.id.hex(), flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    try:
        @ray.remote(num_cpus=0)
        class Creator:
            def make(self) -> str:
                group = placement_group([{"CPU": 0.1}])
                ray.get(group.ready())
                return group.id.hex()

        creator = Creator.remote()
        ours = ray.get(creator.make.remote())
        ray.kill(creator)
        theirs = other.stdout.readline().strip()

        def state(group: str) -> str:
            return ray.util.placement_group_table()[group]["state"]

        assert (state(ours), state(theirs)) == ("CREATED", "CREATED")  # Ray keeps both while their jobs live
        release_placement_groups()
        assert (state(ours), state(theirs)) == ("REMOVED", "CREATED")
    finally:
        other.communicate(timeout=60)  # its driver leaves: its job's group goes with it


# a stage (services.stage, as every entry point) on a local Ray of its own: it opens an MLflow run, prints the pid of
# one of the Ray's processes and waits on a Ray task
STAGE_ON_A_LOCAL_RAY = """
import sys, time, ray
from services.ray_start import ensure_ray
from services.stage import Stage
from services.tracking.run import Tracker

def run(cfg, args):
    ensure_ray(num_cpus=1)
    sleep = ray.remote(lambda seconds: time.sleep(seconds))
    ray.get(sleep.remote(0))  # the function exported, a worker up: the wait below needs the GCS no more
    with Tracker(sys.argv[1], "lost-ray", run_name="waits") as tracked:
        print(tracked.run_id, ray._private.worker._global_node.all_processes[sys.argv[2]][0].process.pid, flush=True)
        ray.get(sleep.remote(300))

sys.exit(Stage("stage", "waits on a local Ray", lambda p: None, lambda args: args, lambda cfg: None, run).main([]))
"""


@pytest.mark.ray
@pytest.mark.parametrize("vital", ["gcs_server", "raylet"])
def test_a_local_ray_that_dies_under_a_stage_ends_it_in_one_line_and_its_run_failed(vital, fresh_sqlite_uri,
                                                                                        tmp_path) -> None:
    """Its GCS or raylet SIGKILLed (the OOM killer, `ray stop` in another shell): Ray's C++ ended the driver a minute
    later, exit 1 after its own log line, the MLflow run left RUNNING. Now: one line naming what stopped, exit 2 within
    seconds, the run FAILED with that reason."""
    import signal
    import time

    from services.tracking.queries import get_run

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    stage = subprocess.Popen([sys.executable, "-c", STAGE_ON_A_LOCAL_RAY, fresh_sqlite_uri, vital],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        run_id, pid = stage.stdout.readline().split()
        killed = time.time()
        os.kill(int(pid), signal.SIGKILL)
        _, err = stage.communicate(timeout=50)  # Ray's own end came after 60 s
    finally:
        stage.kill()
    lines = err.strip().splitlines()
    assert stage.returncode == 2 and lines[-1].startswith(f"stage: error: the local Ray stopped: its {vital} "
                                                          "exited (killed? Ray's logs: "), err[-3000:]
    assert time.time() - killed < 40 and "Traceback" not in err
    run = get_run(fresh_sqlite_uri, run_id)
    assert run["status"] == "FAILED" and run["tags"]["fomm.end_reason"].startswith("the local Ray stopped: its ")


def test_a_local_ray_holds_what_a_stage_needs_but_never_a_number_ray_cannot_start_with() -> None:
    """A local Ray asked for 10**9 CPUs never started (the stage hung): it gets MAX_LOCAL_CPUS, and check_room then
    names the flag that asked for more."""
    from services.ray_start import MAX_LOCAL_CPUS, local_cpus

    cores = os.cpu_count() or 1
    assert local_cpus(0.5) == cores and local_cpus(cores + 2.5) == cores + 3
    assert local_cpus(1e9) == max(cores, MAX_LOCAL_CPUS)
