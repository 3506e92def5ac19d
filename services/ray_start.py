"""One way to start Ray: keep a connection this process already has, join a cluster, or start a local one."""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

from services.ray_address import check_address, cluster_address, cluster_started_here

REPO_ROOT = str(Path(__file__).resolve().parents[1])


class _WithoutTraceback(logging.Formatter):
    """Ray's console lines without their tracebacks, attached (exc_info: its error's one line instead) or written
    into the message (Ray Train's "Error in training function", Tune's sync warnings: their last line kept). The
    log files keep them, and services.cli's one error line names the failure (a programming error still ends in
    Python's own traceback, the workers' included)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        from services.failures import why

        message, traced, trace = record.getMessage().partition("Traceback (most recent call last):")
        error = record.exc_info[1] if record.exc_info else None
        if traced:
            message = f"{message.strip()} {next((t.strip() for t in reversed(trace.splitlines()) if t.strip()), '')}"
        elif error is not None:
            message = f"{message.rstrip()} ({why(error)})"
        brief = logging.makeLogRecord({**record.__dict__, "msg": message, "args": None, "exc_info": None,
                                       "exc_text": None, "stack_info": None})
        return self.inner.format(brief)


def console_without_tracebacks(logger: str) -> None:
    """Ray's console handlers of `logger` (ray, ray.data, ray.train) drop tracebacks (see _WithoutTraceback)."""
    for handler in logging.getLogger(logger).handlers:  # its console's (a log file is not a stream)
        for stream in (handler, getattr(handler, "plain_handler", None)):  # in a worker Ray's formats with its inner
            if isinstance(stream, logging.StreamHandler) and not isinstance(stream.formatter, _WithoutTraceback):
                stream.setFormatter(_WithoutTraceback(stream.formatter))


def local_worker_setup() -> None:
    """Each worker's setup on a local Ray. Ray Train's placement-group cleaner warns where it does its work (it
    removed the workers' group of a run whose controller died: a Tune trial ended under it): its warnings go,
    its errors stay. It finds the cluster as Ray's command line tools do: with another Ray running on this machine,
    it stopped with a traceback ("Found multiple active Ray instances"); RAY_ADDRESS names this one."""
    import ray

    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def token_for_a_local_ray() -> None:
    """A new local Ray turns token authentication on and saves its token in ~/.ray/auth_token: under a home this
    user cannot write (a container's arbitrary user, HOME=/ or unset) ray.init failed with a traceback. There the
    token is kept in this process's environment instead (RAY_AUTH_TOKEN), which Ray's processes inherit: the
    cluster still asks for it."""
    import secrets

    from services.checks import writable_dir
    from services.errors import UserError

    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token" or os.environ.get("RAY_AUTH_TOKEN") \
            or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return  # no token wanted, or the user named one
    try:
        folder = Path.home() / ".ray"
        if (folder / "auth_token").is_file():
            return
        writable_dir("~/.ray", folder)  # where Ray would save a new one
    except (RuntimeError, KeyError, UserError):  # no home (no HOME, no passwd entry), or not this user's to write
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # Ray's own kind: 256 random bits


# the product's tunables that its Ray workers read as well (a sweep's trials start their trainers): a driver joining
# a cluster hands them on, as a local Ray's workers inherit them (paths such as $FOMM_VGG19_WEIGHTS are the machine's)
WORKER_SETTINGS = ("FOMM_ROOM_WAIT_S", "FOMM_S3_MAX_ATTEMPTS", "FOMM_TRACKING_END_WAIT_S", "FOMM_S3_ENDPOINT")
_joined: list[str] = []  # the cluster address ensure_ray joined (none: a local Ray, which ends with the process)


def ensure_ray(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True,
               dashboard: bool = False) -> None:
    """Connect this process to Ray once: the cluster at `address` or $RAY_ADDRESS, else a local one with `num_cpus`
    CPUs (None: all) and, with `dashboard`, its dashboard (Ray Train's placement-group cleaner asks its state API).
    Outside a Ray job, workers get the repository on their PYTHONPATH and the WORKER_SETTINGS set here (never S3
    keys)."""
    import signal
    import threading

    import ray
    import ray.data

    # a map task's own exception, not Ray Data's UserCodeException (which loses its cause on the way to the driver:
    # a full disk in a worker would read as a traceback, not as the one line services.failures gives it)
    context = ray.data.DataContext.get_current()
    context.raise_original_map_exception = True
    # an actor's datasets (a training run's split coordinators) draw their bars here: into a log or a pipe each
    # redraw was a line of terminal codes (200 for a 2-step run); there they log their progress as Ray's own do
    context.use_ray_tqdm = context.use_ray_tqdm and sys.stdout.isatty()
    if not ray.is_initialized():
        path = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
        in_job = os.environ.get("RAY_JOB_ID") or os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")  # its env is set
        settings = {k: os.environ[k] for k in WORKER_SETTINGS if k in os.environ}  # the stage's, in its workers too
        runtime_env = None if in_job else {"env_vars": {"PYTHONPATH": path, **settings}}
        check_address(address)
        address = cluster_address(address)
        # "local": a new Ray of this process's own, also where `ray start` runs one here (ray.init joined that,
        # then refused num_cpus with a traceback: the cluster is the user's to name with --ray-address)
        where = {"address": address} if address else {"address": "local", "num_cpus": num_cpus,
                                                      "include_dashboard": dashboard}
        if address in (None, "local"):  # a new local Ray
            token_for_a_local_ray()
        if not address and (started := cluster_started_here()):  # an operator on a head node meant that one
            print(f"note: a Ray cluster started with `ray start` runs on this machine ({started}); this run starts a "
                  "local Ray of its own (--ray-address auto runs it on that cluster)", flush=True)
        if runtime_env is not None and not address:
            runtime_env["worker_process_setup_hook"] = "services.ray_start.local_worker_setup"
        before = signal.getsignal(signal.SIGTERM)
        _joined[:] = [address] if address not in (None, "local") else []
        ray.init(**where, runtime_env=runtime_env, log_to_driver=log_to_driver, ignore_reinit_error=True)
        if threading.current_thread() is threading.main_thread():
            # ray.init sets a Python SIGTERM handler (sys.exit(15), which a Ray wait turns into exit 1), then its
            # core worker puts a C++ crash handler over it that, at random, aborts the process (-6) instead: put a
            # Python handler back on top, the one there before (a stage's: one line, exit 143), else Ray's
            signal.signal(signal.SIGTERM, before if callable(before) else signal.getsignal(signal.SIGTERM))
        if not _joined:  # after the SIGTERM handler is the stage's again: the watcher stops the stage through it
            watch_local_ray()
    for logger in ("ray", "ray.data"):  # after ray.init, which sets up "ray"'s: Tune's, Ray Train's driver-side lines
        console_without_tracebacks(logger)


VITAL = ("gcs_server", "raylet")  # a local Ray's processes it cannot go on without


def watch_local_ray(poll_s: float = 1.0) -> None:
    """A local Ray whose GCS or raylet died (the OOM killer, `ray stop` in another shell) ended this process a minute
    later from Ray's C++ (exit 1 after its own log line, the MLflow run left RUNNING). A daemon thread sees such a
    death within `poll_s` and stops the main thread (services.failures.stop_main): the run ends FAILED, and the
    stage says why in one line. A shutdown stops the watch first (it disconnects before it stops the processes)."""
    import threading
    import time

    import ray
    from ray._private import worker

    from services.failures import stop_main

    node = worker._global_node

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            try:
                dead = sorted({kind for kind, _ in node.dead_processes() if kind in VITAL})
            except RuntimeError:  # its process table changed as it was read: read again
                continue
            if not ray.is_initialized() or worker._global_node is not node:  # shut down: that stopped them
                return
            if dead:
                stop_main(f"the local Ray stopped: its {' and '.join(dead)} exited (killed? Ray's logs: "
                          f"{node.get_logs_dir_path()})")
                return

    threading.Thread(target=watch, name="local-ray-watch", daemon=True).start()


MAX_LOCAL_CPUS = 4096  # CPUs a local Ray is started with at most (its own cores, or more where a stage needs them)
MAX_NODE_CPUS = 1024  # CPUs one worker or actor may ask for (no node has more)


def local_cpus(needed: float) -> int:
    """The CPUs of a local Ray that must hold `needed` at once (a stage's actors or workers and its data tasks):
    this machine's, or more where it has fewer (their processes share its cores; fewer, and a task waited forever
    for a CPU that was never free), up to MAX_LOCAL_CPUS: a local Ray of 10**9 never started (check_room then names
    the flag that asked for more)."""
    return max(os.cpu_count() or 1, min(math.ceil(needed), MAX_LOCAL_CPUS))


def connected() -> bool:
    """Whether this process is a Ray driver now (without importing Ray where nothing has)."""
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def disconnect() -> None:
    """Leave Ray (a local one stops): the workers' forwarded output ends here, not after a stage's last line. The
    progress bars that workers drew here and never closed (a run ended by Ctrl-C or an error) go without a trace:
    tqdm would draw each once more at exit."""
    if connected():
        if _joined:
            release_placement_groups()
        sys.modules["ray"].shutdown()
    manager = getattr(sys.modules.get("ray.experimental.tqdm_ray"), "_manager", None)  # Ray's driver-side bars
    for group in getattr(manager, "bar_groups", {}).values():
        for bar in group.bars_by_uuid.values():
            bar.bar.leave = False  # closed, its line is cleared, not drawn again
            bar.bar.close()
        group.bars_by_uuid.clear()


def release_placement_groups() -> None:
    """Remove the placement groups this driver's job still holds (a group's id ends with its job's). Ray removes
    them when the job ends, but misses one whose creator died as it was made (a Train controller of a Tune trial
    that Ctrl-C stopped as its workers started): that one held its CPUs until the cluster restarted. The product
    makes no detached group, so none of the job's outlives it on purpose."""
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    try:
        job = ray.get_runtime_context().get_job_id()
        for group, info in ray.util.placement_group_table().items():
            if group.endswith(job) and info["state"] != "REMOVED":
                remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group))))
    except Exception as exc:  # the cluster's to clean then: how the stage ended is not changed by it
        logging.getLogger(__name__).warning("could not remove this job's placement groups: %s", exc)


def check_room(flag: str, resource: str, each: float, workers: int = 1, given: str | None = None) -> None:
    """`workers` workers asking `each` of `resource` (CPU, GPU) fit the connected Ray cluster (one on a node, all at
    once); else a UserError naming the flag (and its value, `given`, else `each`), where Ray would wait forever."""
    import ray

    from services.errors import UserError

    if each <= 0:
        return
    what = f"{flag} {given or f'{each:g}'}"
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    largest = max((n.get(resource, 0.0) for n in nodes), default=0.0)
    total = sum(n.get(resource, 0.0) for n in nodes)
    if each > largest:
        raise UserError(f"{what}: no node of the Ray cluster has {each:g} {resource} (the largest has "
                        f"{largest:g}); the job would wait forever")
    if each * workers > total:
        raise UserError(f"{what} × {workers} workers: the Ray cluster has {total:g} {resource} in all; "
                        "the job would wait forever")


def gpus_for(device: str) -> int:
    """GPUs a Ray actor that runs a model on `device` asks for: one for cuda/cuda:N."""
    return 1 if str(device).startswith("cuda") else 0


def actor_device(device: str) -> str:
    """`device` inside such an actor: Ray shows it its one GPU only, as cuda (cuda:1 would name none)."""
    return "cuda" if gpus_for(device) else device


def check_device_room(device: str) -> None:
    """An actor on `device` (--device) fits the connected cluster: with cuda, a node with a GPU."""
    check_room("--device", "GPU", gpus_for(device), given=f"{device} (one GPU per actor)")
