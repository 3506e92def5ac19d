"""Shared fixtures: seeds, tiny configs, real media, and real local services (Ray, MLflow, moto S3)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
BIN = Path(sys.executable).parent

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
# Ray ≥ 2.5x turns on token authentication by default; the test cluster lives on loopback only
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# keep drivers on 127.0.0.1 instead of rewriting it to the machine's interface address
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# every Ray process of the suite (the session clusters, the local Rays the stages start) reports its metrics and
# node stats once a minute, not every 2.5–10 s, keeps no event-loop statistics, and its dashboard agents check their
# raylet every 5 s, not 0.4 s: nothing here reads them, and an idle 3-node cluster burnt 10.3 CPU-s a minute, 6.7
# so (measured on 2 cores), with both pytest processes' clusters idle through most of the suite. A raylet starts no
# idle workers for its first driver (a job of the product's runtime env never used them: 2 CPU-s a local Ray)
# Ray Train's preemption watcher (an actor per worker group, polling Ray for node drains) stays off: nodes here are
# killed, never drained, and it cost 2–3 CPU-s each time a run's workers started (measured on 2 cores). A node's log
# monitor looks for new log files every 0.5 s, not on each 0.1 s poll: each look globs and stats every worker log the
# session has had (two per worker process), and the log monitors of the suite's Rays took 115 of its 2,393 CPU-s
for name, value in {"RAY_metrics_report_interval_ms": "60000", "REPORTER_UPDATE_INTERVAL_MS": "60000",
                    "METRICS_RECORD_INTERVAL_S": "60", "RAY_event_stats": "0",
                    "RAY_DASHBOARD_AGENT_CHECK_PARENT_INTERVAL_S": "5", "RAY_prestart_worker_first_driver": "0",
                    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0"}.items():
    os.environ.setdefault(name, value)


_AS_A_SHELL_STARTS_IT = """import runpy, signal, sys
inherited = [line.strip() for line in open("/proc/self/status") if line.startswith(("SigBlk", "SigIgn"))]
print("inherited:", *inherited, file=sys.stderr)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def as_a_shell_starts(script: Path) -> list[str]:
    """The command line of `python script` that starts it as a shell would: SIGINT unblocked and at Python's default,
    whatever this test process blocks or ignores (a child inherits both: a suite run saw Ctrl-C have no effect on a
    driver it started), with faulthandler on (SIGABRT prints every thread's stack). It says on stderr what it
    inherited."""
    return [sys.executable, "-X", "faulthandler", "-c", _AS_A_SHELL_STARTS_IT, str(script)]


def last_line(console: str) -> str:
    """The last line a terminal shows of a console capture: cursor moves and line clears of progress bars left out."""
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", console).rstrip().splitlines()[-1].strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered (e.g. 401 or 404): the server is up
        except Exception:  # noqa: BLE001 - any other failure means "not up yet"
            time.sleep(0.3)
    raise RuntimeError(f"service at {url} did not come up in {timeout:.0f}s")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files holding a Ray test first, then those holding a slow one, in their order otherwise: with pytest-xdist's
    `--dist loadfile --no-loadscope-reorder` (make test) the long files start first and the short ones fill the end,
    so both processes finish together instead of one running the last long file alone; and once a process starts a
    file without a Ray test, none of its later files has one (see pytest_runtest_teardown)."""
    ray_files = {item.path for item in items if item.get_closest_marker("ray")}
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path not in ray_files, item.path not in slow_files))
    config.stash[RAY_FILES] = ray_files


RAY_FILES = pytest.StashKey[set]()
_session_cluster: list[dict] = []  # ray_head's cluster while it runs


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the last file with a Ray test, the session's cluster stops: the files with one run first, so no later
    file needs it, and its dozen processes would otherwise idle through the rest of the suite (about 7 CPU-s a
    minute each, on 2 cores). The test's own fixtures (a Ray driver's connection) end first."""
    yield
    ray_files = item.config.stash.get(RAY_FILES, set())
    if _session_cluster and nextitem is not None and nextitem.path not in ray_files:
        stop_session_cluster(_session_cluster.pop())


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's TerminalReporter
    """Lines a test recorded as its `summary` property, printed at the end of the run (also from xdist workers)."""
    for report in terminalreporter.getreports("passed"):
        for name, value in report.user_properties:
            if name == "summary":
                terminalreporter.write_line(str(value))


@pytest.fixture(autouse=True)
def _seed() -> None:
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample media of ../shared/data (faces, bodies, cuts)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"sample media missing: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_config_path() -> Path:
    return REPO_ROOT / "configs" / "tiny-64.yaml"


@contextlib.contextmanager
def tmpfs(disk: Path, size: str = "4m") -> Iterator[Path]:
    """A real file system of `size` (tmpfs) mounted on the new folder `disk`; skips the test where mounting is not
    allowed."""
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                      capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` (and what it holds) made read-only for this process: as root, which file modes do not bind, a
    read-only bind mount of it onto itself (writes fail with EROFS); else its write bits cleared (EACCES)."""
    if os.geteuid() == 0:
        if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode:
            pytest.skip("a read-only bind mount needs root")
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
        try:
            yield folder
        finally:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        return
    modes = {p: p.stat().st_mode for p in (folder, *folder.rglob("*"))}
    for p, mode in modes.items():
        p.chmod(mode & ~0o222)
    try:
        yield folder
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def error_as_a_plain_user(call: Callable[[], object]) -> str:
    """The error `call()` raises ("" if none) for a user that file modes bind: this process, or, as root (which
    reads and writes any file), a forked child that runs as nobody. Its paths must be reachable by anyone."""
    if os.geteuid() != 0:
        try:
            call()
        except Exception as err:  # noqa: BLE001 - the message is the result
            return str(err)
        return ""
    read, write = os.pipe()
    if (child := os.fork()) == 0:  # pragma: no cover - the child's report comes back through the pipe
        message = ""
        try:
            os.setgid(65534)
            os.setuid(65534)
            call()
        except BaseException as err:  # noqa: BLE001
            message = str(err) or type(err).__name__
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(child, 0)
    return message


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A real 4 MiB file system (tmpfs) of this test's own; skipped where mounting is not allowed."""
    with tmpfs(tmp_path / "disk") as disk:
        yield disk


def fill_disk(disk: Path) -> None:
    """Write to `disk` until no block is left (one already full takes no file)."""
    with pytest.raises(OSError, match="No space left"), open(disk / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 65536)
            f.flush()


@pytest.fixture
def zero_frame_video(tmp_path) -> Path:
    """An .mp4 with a video stream and no frames (fragmented, so the header is written without samples)."""
    import av

    path = tmp_path / "zero_frames.mp4"
    container = av.open(str(path), "w", options={"movflags": "frag_keyframe+empty_moov"})
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()
    container.close()
    return path


@pytest.fixture
def corrupt_video(tmp_path, shared_data) -> Path:
    """The first third of a real .mp4: its index (moov) is cut off, so no demuxer can read it."""
    data = (shared_data / "face_talk_d.mp4").read_bytes()
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(data[: len(data) // 3])
    return path


WORKER_NODES = ("node_a", "node_b")  # the session cluster's worker nodes, by custom resource


def wait_job_agent(dashboard: str, env: dict, timeout: float = 240.0) -> None:
    """Submit a trivial job until the head's job agent accepts it ("No available agent" right after start)."""
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        done = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", dashboard, "--", "python", "-c", "pass"],
                              env=env, capture_output=True, text=True, timeout=180)
        if done.returncode == 0:
            return
        last = (done.stderr or done.stdout)[-500:]
        time.sleep(3)
    raise RuntimeError(f"the Ray job agent at {dashboard} never accepted a job: {last}")


def kill_marked(marker: str) -> None:
    """SIGKILL every process whose environment holds `marker` (NAME=value), this one excepted."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            marked = marker.encode() in open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            if marked and int(pid) != os.getpid():
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass  # gone meanwhile, or not ours to read


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory) -> Iterator[dict]:
    """A real Ray cluster on 127.0.0.1: a head (job server, no CPUs) and worker nodes `node_a` and `node_b` of
    2 CPUs each (a custom resource of their name), each a `ray start --block` in its own process group.

    Every Ray test thus runs across nodes; `cluster` (tests.ray_cluster.RayCluster) kills and restarts a node.
    Teardown signals those groups only: `ray stop` would also kill every other Ray instance on the machine.
    """
    from tests.ray_cluster import RayCluster

    # workers read S3 credentials from their own environment, as on a cluster (moto's fixed test keys)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           **os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           # the head checks each node every 1 s instead of 3 (a lost node is declared dead after 5 failed checks:
           # 5 s instead of 15); a check still waits Ray's full timeout, so a slow live node is not declared dead
           "RAY_health_check_period_ms": "1000"}
    env.pop("RAY_ADDRESS", None)
    root = tmp_path_factory.mktemp("ray_cluster")
    env["FOMM_TEST_CLUSTER"] = str(root)  # every process of the cluster inherits it: teardown finds them all
    cluster = RayCluster(root, env)
    info = {"address": cluster.address, "dashboard": cluster.dashboard, "temp_dir": cluster.temp_dir,
            "cluster": cluster, "root": root, "stopped": False, "job_tests": {}}
    _session_cluster[:] = [info]
    try:
        cluster.start_head()
        try:
            wait_http(cluster.dashboard + "/api/version", timeout=180)
        except RuntimeError:
            head_log = (cluster.log_dir / "head.log").read_text()[-3000:]
            raise RuntimeError(f"ray head did not start; its log:\n{head_log}") from None
        for name in WORKER_NODES:  # they start while the head's job agent comes up
            cluster.start_worker(name)
        wait_job_agent(cluster.dashboard, env)
        cluster.wait_workers()
        yield info
    finally:
        _session_cluster.clear()
        stop_session_cluster(info)


def stop_session_cluster(info: dict) -> None:
    """Stop ray_head's cluster (once) and remove its sessions: every process it started goes."""
    if info["stopped"]:
        return
    info["stopped"] = True
    cluster = info["cluster"]
    cluster.stop()
    # workers re-parented away from the groups still carry the session dir on their command line
    subprocess.run(["pkill", "-9", "-f", str(cluster.temp_dir)], capture_output=True)
    kill_marked(f"FOMM_TEST_CLUSTER={info['root']}")  # a worker renamed `ray::…` and re-parented away from the groups
    for folder in [cluster.temp_dir, *(f"{cluster.temp_dir}_{name}" for name in cluster.workers)]:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _whole_cluster(request) -> None:  # noqa: ANN001 - pytest's FixtureRequest
    """A Ray test starts on a whole, free cluster: a worker node lost before it (a node-loss test, or a slow node the
    head declared dead on a loaded machine) is started again first, and no placement group is left holding CPUs.
    Cheap when both hold (two state-API calls)."""
    if {"ray_head", "ray_local"} & set(request.fixturenames):
        if request.getfixturevalue("ray_head")["stopped"]:
            pytest.fail("the session's Ray cluster was stopped after the last file with a test marked `ray`: mark "
                        "this test `ray`")
        cluster = request.getfixturevalue("ray_head")["cluster"]
        cluster.wait_workers()
        if orphans := cluster.wait_no_placement_groups():  # a Ray race, not this test's: said, and cleared
            tests = request.getfixturevalue("ray_head")["job_tests"]
            named = [f"{o} ({tests.get(o.rsplit(' ', 1)[-1], 'a driver the test started')})" for o in orphans]
            warnings.warn(f"Ray kept placement groups of ended jobs; removed: {named}", pytest.PytestWarning,
                          stacklevel=1)


@pytest.fixture
def ray_local(ray_head, request) -> Iterator[dict]:  # noqa: ANN001
    """This test process connected as a Ray driver to the session's head node, for one test: disconnecting ends
    the driver's job, and with it whatever the test left running on the cluster (a Train controller a raised error
    kept alive, its placement group), so the next test's CPUs are free."""
    import ray

    from services.ray_start import release_placement_groups

    ray.init(address=ray_head["address"], log_to_driver=False, ignore_reinit_error=True)
    ray_head["job_tests"][ray.get_runtime_context().get_job_id()] = request.node.nodeid
    try:
        yield ray_head
    finally:
        if ray.is_initialized():  # as a stage's driver leaving a cluster does (services.ray_start.disconnect)
            release_placement_groups()
        ray.shutdown()


def copy_store(template: Path, folder: Path) -> Path:
    """`folder`/mlflow.db: a copy of an MLflow SQLite store whose tables exist (no migrations on first use)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(template, folder / "mlflow.db"))


class MlflowServerProcess:
    """A real MLflow tracking server on 127.0.0.1 (sqlite backend, local artifacts) in its own process group,
    which a test may kill and start again on the same port with the same store."""

    def __init__(self, root: Path, template_db: Path | None = None) -> None:
        self.root, self.port = root, free_port()
        if template_db is not None:  # the server starts without migrating
            copy_store(template_db, root)
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> None:
        cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
               "--default-artifact-root", str(self.root / "artifacts"), "--workers", "1"]
        # without MLflow's job runner (GenAI scorers, trace roll-ups; nothing here uses them): with it the server
        # starts 9 more processes, comes up in 37 s instead of 7 and burns 22 CPU-s a minute while idle
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        wait_http(self.uri + "/health", timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the server's process group (SIGKILL: a crash) and wait until it is gone."""
        if self.proc is None:
            return
        for s, wait in ((sig, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, s)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc = None


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store with its tables created (MLflow's migrations take seconds): copied, never used."""
    import mlflow

    db = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()  # creates and migrates the tables
    return db


@pytest.fixture
def fresh_sqlite_uri(mlflow_template_db, tmp_path) -> str:
    """A test's own empty MLflow SQLite store (a copy of the template)."""
    return f"sqlite:///{copy_store(mlflow_template_db, tmp_path)}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory, mlflow_template_db) -> Iterator[str]:
    """A real MLflow tracking server on 127.0.0.1 (sqlite backend, local artifacts); yields its URI."""
    server = MlflowServerProcess(tmp_path_factory.mktemp("mlflow"), mlflow_template_db)
    try:
        server.start()
        yield server.uri
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sqlite_uri(tmp_path_factory, mlflow_template_db) -> str:
    """A local SQLite MLflow store shared by the session; tests keep apart by their own experiment names or by
    reading their own runs by id."""
    return f"sqlite:///{copy_store(mlflow_template_db, tmp_path_factory.mktemp('mlruns'))}"


def damaged_shards(root: str, endpoint: str | None = None) -> list[str]:
    """Shards whose row count or SHA-256 differs from the dataset's manifest (empty when all are intact)."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from preprocessing.shards import read_manifest
    from services import storage

    bad = []
    for s in read_manifest(root, endpoint)["shards"]:
        path = storage.join(root, s["file"])
        try:
            data = storage.read_bytes(path, endpoint)
        except storage.StorageError:
            bad.append(path)
            continue
        if hashlib.sha256(data).hexdigest() != s["sha256"] or pq.read_metadata(pa.py_buffer(data)).num_rows != s["rows"]:
            bad.append(path)
    return bad


def shard_clips(url: str, split: str | None = None, columns: list[str] | None = None) -> Iterator[dict]:
    """Rows of clip shards in shard order, frames decoded (T×H×W×3 uint8); `columns` limits what is read."""
    from preprocessing.shard_set import ShardSet
    from preprocessing.shards import decode_frames, read_table

    found = ShardSet.open(url)
    filters = [("split", "=", split)] if split is not None else None
    for path in found.paths(split):
        for row in read_table(path, columns, fs=found.location.fs, filters=filters).to_pylist():
            yield {**row, "frames": decode_frames(row["frames"])} if "frames" in row else row


def run_artifacts(tracking_uri: str, run_id: str, dst: Path) -> list[str]:
    """The artifact paths of an MLflow run (files, recursively), read back through a whole download."""
    from mlflow.artifacts import download_artifacts

    root = Path(download_artifacts(run_id=run_id, artifact_path="", dst_path=str(dst), tracking_uri=tracking_uri))
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def mlflow_restartable(tmp_path, mlflow_template_db) -> Iterator[MlflowServerProcess]:
    """A test's own MLflow server (started), which it may kill and start again: tracking outages."""
    server = MlflowServerProcess(tmp_path / "mlflow-server", mlflow_template_db)
    try:
        server.start()
        yield server
    finally:
        server.stop()


S3_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                  "AWS_DEFAULT_PROFILE")


def no_s3_credentials_here(folder: Path) -> dict[str, str]:
    """The settings (beside no S3_CREDENTIALS variables) of a machine where botocore finds no S3 credentials: no
    ~/.aws files (their names under `folder`, not there), no cloud metadata."""
    return {"AWS_SHARED_CREDENTIALS_FILE": str(folder / "none"), "AWS_CONFIG_FILE": str(folder / "none"),
            "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture()
def no_s3_credentials(monkeypatch, tmp_path) -> None:
    for name in S3_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    for name, value in no_s3_credentials_here(tmp_path).items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[dict]:
    """A moto S3 server on 127.0.0.1 with credentials in the environment; yields endpoint and bucket."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                            "AWS_ENDPOINT_URL", "FOMM_S3_ENDPOINT")}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
                       "FOMM_S3_ENDPOINT": endpoint})
    try:
        wait_http(endpoint + "/moto-api/", timeout=60)
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="fomm-test")
        yield {"endpoint": endpoint, "bucket": "fomm-test"}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory) -> Path:
    """8 JPEG clips of 12 frames at 32×32, 2 identities; clips 3 and 7 held out."""
    from preprocessing.synthetic import write_synthetic_shards

    return write_synthetic_shards(tmp_path_factory.mktemp("shards"), num_videos=8, size=32, num_frames=12,
                                  frame_format="jpeg", test_every=4)


@pytest.fixture(scope="session")
def synthetic_shards_64(tmp_path_factory) -> Path:
    """12 JPEG clips of 16 frames at 64×64 (the demo size), 3 identities; every third clip held out."""
    from preprocessing.synthetic import write_synthetic_shards

    return write_synthetic_shards(tmp_path_factory.mktemp("shards64"), num_videos=12, size=64, num_frames=16,
                                  frame_format="jpeg", num_identities=3, test_every=3)


@pytest.fixture
def wait_registered():  # noqa: ANN201 - a callable(job, timeout) -> registered checkpoint names
    """Waits until Ray Train has registered a checkpoint of a training job (its snapshot names one), not
    merely begun writing one: a job stopped between the two resumes from an older checkpoint or from step 0."""
    from services.storage import StorageError
    from training.job import registered_checkpoints

    def wait(job, timeout: float) -> list[str]:  # noqa: ANN001 - training.job.TrainJob
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if names := registered_checkpoints(job):
                    return names
            except (StorageError, ValueError):
                pass  # the snapshot caught mid-write
            time.sleep(0.2)  # a read of the snapshot (S3 for some runs) each time; a step takes longer
        raise TimeoutError(f"{job.storage}/{job.run_name}: no registered checkpoint within {timeout:.0f}s")

    return wait
