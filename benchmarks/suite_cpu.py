"""Where a command's CPU time goes, by kind of process (Linux): runs the command, reads /proc every --every seconds
and prints JSON, the CPU-seconds of each kind (a Ray actor or task by its class, a Ray node's own processes, the
stages the tests run, MLflow, moto, pytest). No benchmark (`make bench` skips it): a tool for the test suite's time.

    python benchmarks/suite_cpu.py -- .venv/bin/python -m pytest -q -n 2 --dist loadfile tests/training

Counted: the command and every process it starts (Ray's nodes, workers and their children included, also once
their parent has gone). A process that lives less than one interval is missed or counted in part.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
RAY_SCRIPTS = {"dashboard/agent.py": "Ray node: dashboard agent", "dashboard/dashboard.py": "Ray head: dashboard",
               "runtime_env/agent": "Ray node: runtime-env agent", "log_monitor.py": "Ray node: log monitor",
               "autoscaler/_private/monitor.py": "Ray head: monitor", "default_worker.py": "Ray worker, idle"}


def kind_of(command: str) -> str:
    """A process's kind from its command line (as /proc/PID/cmdline gives it, NULs as spaces)."""
    if not command:
        return "(exiting when first seen: no command line)"
    if command.startswith("ray::"):  # ray::Class.method → Class; ray::IDLE: a worker before or between its work
        name = command.split()[0].split(".")[0].removeprefix("ray::")
        return "Ray worker, idle" if name == "IDLE" else f"Ray {name}"
    if command.startswith("ray-dashboard-"):
        return "Ray head: dashboard modules"
    executable = Path(command.split()[0]).name if command else ""
    if executable in ("gcs_server", "raylet"):
        return f"Ray node: {executable}"
    for script, kind in RAY_SCRIPTS.items():
        if script in command:
            return kind
    if stage := re.search(r"pipelines/\w+\.py", command):
        return f"stage {stage.group(0)}"
    for word, kind in (("mlflow server", "MLflow server"), ("mlflow.server", "MLflow server"), ("moto", "moto S3"),
                       (" ray start", "Ray node: `ray start`"), ("ray_cluster.py start", "Ray node: `ray start`"),
                       ("pytest", "pytest"), ("exec(eval(", "pytest")):
        if word in command:
            return kind
    return command[:60]


def sample(root: int, seen: dict[tuple[str, str], list]) -> None:
    """Update {(pid, start): [kind, CPU-seconds so far]} from /proc for process `root` and every process it started
    (kept once seen: Ray's processes outlive the drivers that start them)."""
    table = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        table[pid] = (stat[1], (pid, stat[19]), (int(stat[11]) + int(stat[12])) / TICKS, command.strip())
    ours = {key[0] for key in seen} | {str(root)}
    grew = True
    while grew:  # a child may be listed before its parent
        new = {pid for pid, (parent, key, _, _) in table.items() if parent in ours and pid not in ours}
        ours |= new
        grew = bool(new)
    for pid in ours & table.keys():
        _, key, cpu, command = table[pid]
        entry = seen.setdefault(key, [kind_of(command), cpu])
        entry[1] = cpu
        if entry[0] == "Ray worker, idle":  # an idle worker takes its actor's or task's title later
            entry[0] = kind_of(command)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=0.25, help="seconds between two readings of /proc")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    seen: dict[tuple[str, str], list] = {}
    start = time.monotonic()
    proc = subprocess.Popen(command)
    while proc.poll() is None:
        sample(proc.pid, seen)
        time.sleep(args.every)
    sample(proc.pid, seen)
    wall = time.monotonic() - start
    kinds: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for kind, cpu in seen.values():
        if cpu > 0:
            kinds[kind][0] += cpu
            kinds[kind][1] += 1
    total = sum(cpu for cpu, _ in kinds.values())
    print(json.dumps({"command": " ".join(command), "exit_status": proc.returncode, "wall_s": round(wall, 1),
                      "cpu_s": round(total, 1), "cores_busy": round(total / wall, 2),
                      "by_kind": {kind: {"cpu_s": round(cpu, 1), "share": round(cpu / total, 3), "processes": n}
                                  for kind, (cpu, n) in sorted(kinds.items(), key=lambda kv: -kv[1][0])}},
                     indent=1))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
