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
