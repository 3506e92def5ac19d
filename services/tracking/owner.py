"""The process that owns an MLflow run, as tag `fomm.owner`: whether it still lives. MLflow has no heartbeat, so a
run whose driver was SIGKILLed (the OOM killer, `kill -9`) stayed RUNNING forever; the next run of its experiment
on that machine ends it KILLED (services.tracking.run)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

OWNER = "fomm.owner"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat field 22): a reused PID differs here."""
    stat = _read(f"/proc/{pid}/stat")
    return stat.rsplit(")", 1)[1].split()[19] if stat else None


def _machine() -> dict[str, str | None]:
    """This kernel's boot and PID namespace: a PID names the same process only where both are the same (not on
    another machine, in another container, or after a reboot; None off Linux)."""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = None
    return {"boot": _read("/proc/sys/kernel/random/boot_id"), "pidns": pidns}


def this_process() -> str:
    """This process as tag `OWNER` holds it (JSON: host, boot, pidns, pid, start)."""
    return json.dumps({"host": socket.gethostname(), **_machine(), "pid": os.getpid(), "start": _started(os.getpid())})


def gone(owner: str | None) -> str | None:
    """Where the process `owner` (an `OWNER` tag) names has ended, who it was ("HOST, PID N"); None while it lives,
    or where this process cannot tell (another machine or container, a reboot since, no /proc, no tag)."""
    try:
        who = json.loads(owner or "")
        mine = _machine()
        if not isinstance(who, dict) or None in mine.values() or any(who.get(k) != v for k, v in mine.items()):
            return None
        alive = who.get("start") is not None and _started(int(who["pid"])) == who["start"]
    except (ValueError, TypeError, KeyError):  # a tag written by hand, or by another program
        return None
    return None if alive else f"{who.get('host')}, PID {who['pid']}"
