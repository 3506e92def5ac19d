"""A throw-away multi-node Ray cluster on this machine for the cluster benchmarks (not a benchmark itself).

The nodes are the tests' (tests/ray_cluster.py, imported rather than copied: a head without CPUs and worker
nodes, each a `ray start --block` in its own process group with a temp dir of its own). Jobs go in with
`ray job submit --working-dir <repo>`, as on a real cluster. Memory and CPU time are read from /proc (Linux): a
node's processes are its process group and their descendants, so peak RSS is known per process and per node.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.conftest import wait_http, wait_job_agent  # noqa: E402 - the tests' cluster start-up, reused
from tests.ray_cluster import RayCluster  # noqa: E402

BIN = Path(sys.executable).parent


def cluster_env() -> dict[str, str]:
    """The environment every node and `ray job submit` get (as tests/conftest.py builds it)."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_DEDUP_LOGS": "0",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    return env


def make_corpus(folder: Path, num_videos: int, size: int, num_frames: int, distinct: int = 8, seed: int = 0) -> Path:
    """`num_videos` synthetic .mp4 files in `folder`: `distinct` rendered ones, hard-linked under distinct names
    (rendering costs more than preprocessing them; ids, and so the splits, all differ). No metadata.csv."""
    from preprocessing.synthetic import generate_synthetic_videos

    cache = folder.parent / f".render_{size}_{num_frames}_{distinct}_{seed}"
    if not cache.is_dir():
        generate_synthetic_videos(cache, num_videos=distinct, size=size, num_frames=num_frames, seed=seed)
    sources = sorted(cache.glob("*.mp4"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_videos):
        os.link(sources[i % len(sources)], folder / f"v{i:06d}.mp4")
    return folder


# ---------------------------------------------------------------- memory, from /proc


TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, int, str, float, int] | None:
    """(process group, RSS in bytes, title, CPU seconds, parent pid) of a live process; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, ValueError, IndexError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, pgrp, …, utime (11), stime (12)
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    return int(fields[2]), rss_pages * os.sysconf("SC_PAGE_SIZE"), title, cpu, int(fields[1])


@dataclass
class RssPoller:
    """Polls every process of the given nodes (their process groups, and the descendants of those: a Ray worker
    starts a session of its own under its raylet); keeps each one's peak RSS (bytes), title and CPU time."""

    groups: dict[int, str]  # process group id of a node's `ray start` → node name
    every: float = 0.2
    peaks: dict[int, tuple[str, str, int]] = field(default_factory=dict)  # pid → (node, title, peak RSS)
    node_peaks: dict[str, int] = field(default_factory=dict)  # node → peak of its processes' summed RSS
    cpu: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid → (CPU s when first seen, last seen)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def poll(self) -> None:
        procs = {int(e.name): info for e in os.scandir("/proc")
                 if e.name.isdigit() and (info := _proc_stat(int(e.name))) is not None}
        node: dict[int, str | None] = {}

        def node_of(pid: int) -> str | None:
            chain = []
            while pid in procs and pid not in node and len(chain) < 64:
                chain.append(pid)
                if procs[pid][0] in self.groups:
                    node[pid] = self.groups[procs[pid][0]]
                    break
                pid = procs[pid][4]
            found = node.get(pid)
            for p in chain:
                node[p] = found
            return found

        totals: dict[str, int] = {}
        for pid, (_, rss, title, cpu, _) in procs.items():
            if (name := node_of(pid)) is None:
                continue
            old = self.peaks.get(pid, ("", "", 0))
            # a Ray worker renames itself (ray::IDLE → ray::MapWorker(...)): keep the most telling title
            busy = title.startswith("ray::") and not title.startswith("ray::IDLE")
            self.peaks[pid] = (name, title if busy else old[1] or title, max(old[2], rss))
            self.cpu[pid] = (self.cpu.get(pid, (cpu, cpu))[0], cpu)
            totals[name] = totals.get(name, 0) + rss
        for name, total in totals.items():
            self.node_peaks[name] = max(self.node_peaks.get(name, 0), total)

    def __enter__(self) -> RssPoller:
        def loop() -> None:
            while not self._stop.is_set():
                self.poll()
                self._stop.wait(self.every)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def worker_cpu_s(self) -> float:
        """CPU seconds the worker nodes' processes (not the head's) used while polled (to the last poll)."""
        return sum(last - first for pid, (first, last) in self.cpu.items() if self.peaks[pid][0] != "head")

    def workers(self) -> list[tuple[str, str, int]]:
        """(node, title, peak RSS) of the worker nodes' Ray worker processes (titles `ray::…`, not agents) that
        did work."""
        return [v for v in self.peaks.values() if v[0] != "head" and v[1].startswith("ray::")
                and not v[1].startswith("ray::IDLE") and "Agent" not in v[1]]


# ---------------------------------------------------------------- the cluster


@dataclass
class LocalCluster:
    """Head plus worker nodes of `cpus` CPUs and `object_store` bytes each; `with` stops and removes it all."""

    folder: Path
    cpus: int = 1
    object_store: int = 2**30
    cluster: RayCluster | None = None

    def __enter__(self) -> LocalCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cluster = RayCluster(self.folder, cluster_env(), cpus=self.cpus, object_store=self.object_store)
        return self

    def start(self, workers: list[str]) -> float:
        """Start the head and the named worker nodes; seconds until a job is accepted and all nodes are up."""
        c, start = self.cluster, time.perf_counter()
        c.start_head()
        wait_http(c.dashboard + "/api/version", timeout=240)
        for name in workers:
            c.start_worker(name)
        wait_job_agent(c.dashboard, c.env)
        c.wait_workers()
        return time.perf_counter() - start

    def add_worker(self, name: str) -> float:
        """One more worker node; seconds until the head lists it."""
        start = time.perf_counter()
        self.cluster.start_worker(name)
        self.cluster.wait_workers()
        return time.perf_counter() - start

    def groups(self) -> dict[int, str]:
        """Process group id → node name ('head' or the worker's resource name)."""
        c = self.cluster
        out = {c.head.pid: "head"} if c.head is not None else {}
        out.update({n.proc.pid: name for name, n in c.workers.items() if n.proc is not None})
        return out

    def submit(self, args: list[str], sid: str, timeout: float = 1200) -> tuple[float, str]:
        """`ray job submit --no-wait` of `python <args>` with the repository as working dir, then the job's status
        polled until it ends (a followed log's websocket can drop on a busy head); (wall seconds, log).
        Raises when the job fails."""
        cmd = [str(BIN / "ray"), "job", "submit", "--no-wait", "--address", self.cluster.dashboard, "--submission-id",
               sid, "--working-dir", str(REPO), "--", sys.executable, *args]
        start = time.perf_counter()
        done = subprocess.run(cmd, env=self.cluster.env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"job {sid} not submitted ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
        status = ""
        while status not in ("SUCCEEDED", "FAILED", "STOPPED") and time.perf_counter() - start < timeout:
            time.sleep(0.2)
            status = self._get(f"/api/jobs/{sid}").get("status", "")
        seconds = time.perf_counter() - start
        log = self._get(f"/api/jobs/{sid}/logs").get("logs", "")
        if status != "SUCCEEDED":
            raise RuntimeError(f"job {sid} ended {status or 'unknown'}:\n{log[-4000:]}")
        return seconds, log

    def _get(self, path: str) -> dict:
        """The head's job API (JSON); {} when it does not answer this time."""
        try:
            with urllib.request.urlopen(self.cluster.dashboard + path, timeout=30) as r:
                return json.load(r)
        except (OSError, ValueError):
            return {}

    def spilled(self) -> dict[str, int]:
        """Bytes spilled so far, by the head's account (`ray memory --stats-only`: cumulative; `stats_found` 1 when
        it printed a "Spilled" line, which Ray does only once something spilled) and as files now in the nodes'
        spill folders."""
        c = self.cluster
        out = subprocess.run([str(BIN / "ray"), "memory", "--stats-only", "--address", c.address], env=c.env,
                             capture_output=True, text=True, timeout=120).stdout
        m = re.search(r"Spilled ([\d.]+) MiB", out)
        files = sum(f.stat().st_size for d in self.temp_dirs() if d.is_dir()
                    for f in d.rglob("*") if "spill" in str(f.relative_to(d)) and f.is_file())
        return {"spilled_bytes_total": int(float(m.group(1)) * 2**20) if m else 0, "spill_files_bytes": files,
                "stats_found": int(m is not None)}

    def temp_dirs(self) -> list[Path]:
        c = self.cluster
        return [c.temp_dir, *(Path(f"{c.temp_dir}_{name}") for name in c.workers)]

    def __exit__(self, *exc: object) -> None:
        if self.cluster is None:
            return
        groups = set(self.groups())
        self.cluster.stop()
        # what outlives its node's leader (agents, re-parented workers) still holds the node's group or names or
        # opens its temp dir: end those, by pid
        mine = re.compile("|".join(re.escape(str(d)) + r"(?:[/_\s]|$)" for d in self.temp_dirs()))
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            info = _proc_stat(int(entry.name))
            if info is not None and (info[0] in groups or mine.search(info[2]) or _opens(int(entry.name), mine)):
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except OSError:
                    pass
        for d in self.temp_dirs():
            shutil.rmtree(d, ignore_errors=True)


def _opens(pid: int, pattern: re.Pattern) -> bool:
    """Whether a process has a file open whose path matches."""
    try:
        return any(pattern.search(os.readlink(f"/proc/{pid}/fd/{fd}")) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False
