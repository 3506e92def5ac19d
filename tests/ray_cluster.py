"""A multi-node Ray cluster on one machine for the tests: a head and worker nodes, each a `ray start --block`
in its own process group (so a test can SIGKILL one node whole), each raylet on ports of its own.

Run as a script, this module is `ray start` for a worker node on loopback: Ray refuses a worker node while
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (which keeps the tests' drivers on 127.0.0.1), and with it on it rewrites
the head's 127.0.0.1 to the machine's interface address, where the head does not listen.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
JOB_ENDED = ("SUCCEEDED", "FAILED", "STOPPED")  # a job's status once its driver has left


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(size: int = 100, low: int = 20000, high: int = 32000) -> int:
    """The first of `size` consecutive free ports below Linux's ephemeral range (for a raylet's workers); each
    pytest-xdist process (gw0, gw1, …) draws from a slice of its own, so two test clusters never share a range."""
    slices = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    span = (high - low) // slices
    low += span * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    high = low + span
    for _ in range(200):
        base = random.randrange(low, high - size)
        try:
            for p in range(base, base + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {size} free consecutive ports in [{low}, {high})")


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGKILL, grace: float = 10.0) -> None:
    """Signal a process group (a whole node) and wait for its leader; SIGKILL when `sig` leaves it alive."""
    for s, wait in ((sig, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, s)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class WorkerNode:
    """A worker node: `ray start --address … --block` with `resource` (1 of it) to show where work ran."""

    resource: str
    proc: subprocess.Popen | None = None
    log: Path | None = None


@dataclass
class RayCluster:
    """Head (no CPUs: work runs on the workers) plus worker nodes of `cpus` CPUs each; the head's folder is
    `temp_dir`, each worker node's `temp_dir`_<resource>."""

    log_dir: Path
    env: dict
    cpus: int = 2
    object_store: int = 2 * 2**30
    port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    head: subprocess.Popen | None = None
    workers: dict[str, WorkerNode] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def temp_dir(self) -> Path:
        return Path("/tmp") / f"ray_t{self.port}"

    def start_head(self) -> None:
        cmd = [str(BIN / "ray"), "start", "--head", "--block", f"--port={self.port}", "--node-ip-address=127.0.0.1",
               "--num-cpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
               f"--dashboard-port={self.dashboard_port}", f"--dashboard-agent-listen-port={free_port()}",
               f"--ray-client-server-port={free_port()}", f"--object-store-memory={self.object_store}",
               f"--temp-dir={self.temp_dir}", "--disable-usage-stats"]
        self.head = self._spawn(cmd, self.log_dir / "head.log")

    def start_worker(self, resource: str) -> WorkerNode:
        """Start (or start again) the worker node named by its custom resource; returns without waiting."""
        base = free_port_range()
        cmd = [sys.executable, __file__, "start", "--block", f"--address={self.address}",
               "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus}", f"--resources={json.dumps({resource: 1})}",
               f"--object-store-memory={self.object_store}", "--disable-usage-stats",
               # a folder of its own as on a real node: nodes sharing one would share runtime_resources/, and one
               # node's agent deleting a job's working_dir there pulls it from under the others
               f"--temp-dir={self.temp_dir}_{resource}",
               # one host, several raylets: every port of their own, else "bind: Address already in use"
               f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
               f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               f"--min-worker-port={base}", f"--max-worker-port={base + 99}"]
        node = self.workers.setdefault(resource, WorkerNode(resource))
        node.log = self.log_dir / f"{resource}.log"
        node.proc = self._spawn(cmd, node.log)
        return node

    def replace_worker(self, resource: str, timeout: float = 240.0) -> None:
        """A lost node's replacement, as an autoscaler's: started now, waited for until the head lists it alive
        under a new node id."""
        try:
            old = self.node_ids().get(resource)  # the lost node, while the head still lists it
        except OSError:
            old = None
        self.start_worker(resource)
        self.wait_workers(timeout, stale={resource: old})

    def _spawn(self, cmd: list[str], log: Path) -> subprocess.Popen:
        # RAY_ADDRESS: the cluster's own processes (Ray Train's placement-group cleaner) look up its state API by it;
        # without it they fail with "multiple active Ray instances" when another test process runs a cluster too
        env = {**self.env, "RAY_ADDRESS": self.address}
        with open(log, "ab") as out:
            return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def state(self, kind: str, detail: bool = False) -> list[dict]:
        """The rows of the head's state API for `kind` (nodes, actors, tasks, placement_groups)."""
        query = "limit=500" + ("&detail=1" if detail else "")
        with urllib.request.urlopen(f"{self.dashboard}/api/v0/{kind}?{query}", timeout=10) as r:
            return json.load(r)["data"]["result"]["result"]

    def alive_nodes(self) -> list[dict]:
        """The live nodes as the head's state API lists them (node_id, resources_total, is_head_node, …)."""
        return [n for n in self.state("nodes") if n.get("state") == "ALIVE"]

    def node_ids(self) -> dict[str, str]:
        """Custom resource → node id of each live worker node."""
        return {name: n["node_id"] for n in self.alive_nodes() for name in self.workers
                if name in n.get("resources_total", {})}

    def wait_workers(self, timeout: float = 240.0, stale: dict[str, str | None] | None = None) -> dict[str, str]:
        """Wait until every worker node is alive in the head's node table (a node named in `stale` under another id
        than that one); a node that dies starting up (a busy machine can miss Ray's start-up deadline) is started
        again, twice at most. Returns node_ids()."""
        deadline, retries = time.time() + timeout, 2
        while time.time() < deadline:
            for node in list(self.workers.values()):
                if node.proc is not None and node.proc.poll() is not None:
                    if retries == 0:
                        raise RuntimeError(f"worker node {node.resource} exited:\n{node.log.read_text()[-3000:]}")
                    retries -= 1
                    self.start_worker(node.resource)
            try:
                ids = {name: i for name, i in self.node_ids().items() if i != (stale or {}).get(name)}
            except OSError:
                ids = {}
            if len(ids) == len(self.workers):
                return ids
            time.sleep(0.3)
        raise RuntimeError(f"worker nodes not alive after {timeout:.0f}s: {sorted(self.workers)}")

    def wait_no_placement_groups(self, timeout: float = 60.0) -> list[str]:
        """Wait until no placement group holds the cluster's CPUs (an ended job's are removed within seconds).
        A group still there after `timeout` whose job has ended is one Ray lost track of (made by an actor as it
        died, after Ray cleared the job): it is removed, and returned as "group job …" for the caller to report. One
        of a live job fails the test at once, saying what holds it, instead of a later wait for CPUs."""
        deadline = time.time() + timeout
        while True:
            live = [r for r in self.state("placement_groups", detail=True) if r["state"] != "REMOVED"]
            if not live:
                return []
            if time.time() > deadline:
                try:
                    ended = {j.get("job_id") for j in self.jobs() if j.get("status") in JOB_ENDED}
                except OSError:  # the jobs API did not answer: each group is said as it is
                    ended = set()
                orphans = [r for r in live if r.get("creator_job_id") in ended]
                if len(orphans) < len(live):  # with what created them: a recurrence names its cause
                    detail = [{k: r.get(k) for k in ("placement_group_id", "name", "creator_job_id", "state",
                                                     "is_detached", "stats")} for r in live]
                    raise RuntimeError(f"placement groups left by an earlier test: {detail}\n{self.describe()}")
                self.remove_placement_groups([r["placement_group_id"] for r in orphans])
                return [f"{r['placement_group_id'][:8]} {r['state']} job {r['creator_job_id']}" for r in orphans]
            time.sleep(0.5)

    def jobs(self) -> list[dict]:
        """Every job the cluster has had (drivers and submitted ones) as its jobs API lists them: job_id, type,
        status, driver_info, entrypoint, …."""
        with urllib.request.urlopen(f"{self.dashboard}/api/jobs/", timeout=10) as r:
            return json.load(r)

    def remove_placement_groups(self, groups: list[str]) -> None:
        """Remove placement groups by id, from a driver of its own (this process may be one of another job)."""
        script = ("import sys, ray; from ray.util.placement_group import PlacementGroup, remove_placement_group; "
                  "ray.init(address=sys.argv[1], log_to_driver=False); "
                  "[remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(g)))) "
                  "for g in sys.argv[2:]]")
        subprocess.run([sys.executable, "-c", script, self.address, *groups], env=self.env, check=True,
                       capture_output=True, timeout=120)

    def describe(self) -> str:
        """What the cluster holds now (`ray status`, live actors, unfinished tasks): for a test's failure message."""
        status = subprocess.run([str(BIN / "ray"), "status", f"--address={self.address}"], capture_output=True,
                                text=True, timeout=60, env=self.env)
        parts = [status.stdout[-2500:] or status.stderr[-1000:]]
        for kind, done in (("actors", {"DEAD"}), ("tasks", {"FINISHED", "FAILED"})):
            try:
                rows = self.state(kind, detail=True)
            except OSError as err:
                parts.append(f"{kind}: {err}")
                continue
            live = [f"  {r.get('class_name') or r.get('name')} {r.get('state')} {r.get('required_resources')} "
                    f"node {str(r.get('node_id'))[:8]} job {r.get('job_id')}" for r in rows if r.get("state") not in done]
            parts.append(f"{kind} not done ({len(live)}):\n" + "\n".join(live[:40]))
        try:  # drivers and submitted jobs: whether the job that holds something has ended
            jobs = [f"  {j.get('job_id')} {j.get('type')} {j.get('status')} driver "
                    f"{(j.get('driver_info') or {}).get('pid')} {(j.get('entrypoint') or '')[:80]}"
                    for j in self.jobs()]
            parts.append("jobs:\n" + "\n".join(jobs[-20:]))
        except OSError as err:
            parts.append(f"jobs: {err}")
        return "\n".join(parts)

    def kill_worker(self, resource: str) -> None:
        """SIGKILL a worker node's whole process group (raylet, agents and its workers): a lost machine."""
        node = self.workers[resource]
        if node.proc is not None:
            stop_group(node.proc, signal.SIGKILL)

    def stop(self) -> None:
        """Every node at once: SIGTERM, 5 s of grace in all, then SIGKILL (a throw-away cluster)."""
        procs = [p for p in [*(n.proc for n in self.workers.values()), self.head] if p is not None]
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                stop_group(proc, signal.SIGKILL)


def _start_worker_node() -> int:
    """`ray start` for a worker node that joins a head on 127.0.0.1 as it is."""
    import ray._private.ray_constants as ray_constants
    import ray._private.services as services
    from ray.scripts.scripts import main

    ray_constants.ENABLE_RAY_CLUSTER = True
    services.resolve_ip_for_localhost = lambda host: host
    return main()


if __name__ == "__main__":
    sys.exit(_start_worker_node())
