"""services.failures through run_cli: each environment-failure family is one line and exit 2; a bug still raises."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import run_cli


def _raise(err: BaseException):  # noqa: ANN202 - a main that fails with `err`
    def main(argv: list[str]) -> int:
        raise err

    return main


def _wrapped(inner: BaseException) -> BaseException:
    """`inner` as the cause of a library's own error type (as s3fs and MLflow wrap them)."""
    try:
        try:
            raise inner
        except BaseException as err:
            raise RuntimeError("wrapped by a library") from err
    except RuntimeError as outer:
        return outer


class TaskError(Exception):
    """Like Ray's RayTaskError: the worker's exception kept in `cause`, not in __cause__."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("task failed")
        self.cause = cause


def _families() -> list[tuple[BaseException, str]]:
    import numpy as np
    import torch
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, PartialCredentialsError
    from mlflow.exceptions import MlflowException
    from PIL import Image
    from ray.exceptions import OutOfDiskError
    from ray.train import ControllerError, WorkerGroupError

    return [
        (NoCredentialsError(), "S3: Unable to locate credentials (set AWS_ACCESS_KEY_ID"),
        (_wrapped(NoCredentialsError()), "S3: Unable to locate credentials"),
        (PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), "S3: Partial credentials"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), 'S3: Could not connect to the endpoint URL: "http://127.0.0.1:9"'),
        (OSError(errno.ENOSPC, "No space left on device", "/out/x.mp4"), "/out/x.mp4: no space left on the device"),
        (OSError(errno.EROFS, "Read-only file system", "/ro/x"), "/ro/x: read-only file system"),
        (TaskError(OSError(errno.ENOSPC, "No space left", "/w/_work/p")), "/w/_work/p: no space left on the device"),
        (WorkerGroupError("rank 1: ...", {1: OSError(errno.ENOSPC, "No space left", "/runs/r/c.pth.tar")}),
         "/runs/r/c.pth.tar: no space left on the device"),  # a Ray Train worker's (its checkpoint's upload)
        (ControllerError(OSError(errno.EDQUOT, "Disk quota exceeded")), "disk quota exceeded"),
        (PermissionError(errno.EACCES, "Permission denied", "/ro/y"), "/ro/y: permission denied"),
        (_decode_error(), "not UTF-8 text: invalid start byte"),
        (OverflowError("cannot convert float infinity to integer"), "a number is out of range: cannot convert"),
        (_null_byte(), "a path holds a NUL byte"),
        (Image.DecompressionBombError("Image size (1000000000 pixels) exceeds limit"), "image refused: Image size"),
        (MlflowException("API request to http://127.0.0.1:9/api failed\nretries exhausted"), "MLflow: API request to"),
        (MlflowException("(raised as a result of Query-invoked autoflush; …)\n(sqlite3.OperationalError) database or "
                         "disk is full"), "MLflow: the tracking store's disk is full (database or disk is full)"),
        # real allocations of 4 PiB (above any machine's address space): PyTorch's and NumPy's own errors
        (_failed(lambda: torch.empty(2**52, dtype=torch.uint8)), "out of memory: could not allocate 4,194,304.0 GiB "
                                                                 "(a smaller batch, frame size or model needs less)"),
        (_failed(lambda: np.empty(2**52, np.uint8)), "out of memory: Unable to allocate 4.00 PiB for an array"),
        (WorkerGroupError("rank 0: ...", {0: _failed(lambda: torch.zeros(2**50, 16))}), "out of memory: could not"),
        (TaskError(OutOfDiskError()), "a Ray node's disk is over 95% full, where its object store spills"),
    ]


def _failed(allocate) -> BaseException:  # noqa: ANN001 - a call that fails
    try:
        allocate()
    except BaseException as err:  # noqa: BLE001 - the error is the value
        return err
    raise AssertionError("allocated")


def _null_byte() -> ValueError:
    import os

    try:
        os.stat("a\x00b")
    except ValueError as err:
        return err
    raise AssertionError("stat")


def _decode_error() -> UnicodeDecodeError:
    try:
        b"\xff\xfe".decode("utf-8")
    except UnicodeDecodeError as err:
        return err
    raise AssertionError("decoded")


def test_each_environment_failure_family_is_one_line_and_status_2(capsys) -> None:
    for err, start in _families():
        assert run_cli(_raise(err), [], "prog") == 2, err
        out = capsys.readouterr().err
        assert out.startswith(f"prog: error: {start}") and out.count("\n") == 1, out


def test_other_errors_keep_their_traceback() -> None:
    with pytest.raises(RuntimeError):
        run_cli(_raise(RuntimeError("a bug")), [], "prog")
    with pytest.raises(OSError):  # an OSError that is not about the disk or permissions is not guessed at
        run_cli(_raise(OSError(errno.EBADF, "Bad file descriptor")), [], "prog")


FULL_DISK_DRIVER = """
import errno, sys
import ray.data
from services.cli import run_cli
from services.ray_start import ensure_ray

class FullDisk:  # a Ray Data map whose write fails as on a full disk
    def __call__(self, row):
        raise OSError(errno.ENOSPC, "No space left on device", "/out/_work/parts/v.parquet")

def main(argv):
    ensure_ray()
    ray.data.range(1).map(FullDisk, concurrency=1).materialize()

sys.exit(run_cli(main, [], "prog"))
"""


@pytest.mark.ray
def test_a_full_disk_inside_a_ray_data_task_is_one_line_at_the_driver(ray_head) -> None:
    """Ray Data wraps a task's error in UserCodeException, whose cause is lost on the way to the driver: ensure_ray
    has Ray Data raise the task's own error instead, and its console lines come without the task's traceback (Ray
    Data's log file keeps it). Ray Data writes its retry note where the OSError's file name was: the line names the
    file from the task's traceback, which Ray's error keeps (it said only "no space left on the device"). A driver
    of its own, as a user runs one, on the tests' cluster."""
    env = {**os.environ, "RAY_ADDRESS": ray_head["address"], "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run([sys.executable, "-c", FULL_DISK_DRIVER], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.splitlines()[-1] == "prog: error: /out/_work/parts/v.parquet: no space left on the device"
    assert "Traceback" not in done.stderr and "\tERROR " in done.stderr


def test_why_a_run_failed_is_its_root_errors_line() -> None:
    """The reason an MLflow run's page shows: an environment failure's line, else the first line of the error a
    Ray Train run failed on (its controller's, or its first failed worker's), not Ray's 'Training failed …'."""
    from ray.train import ControllerError, WorkerGroupError

    from services.failures import why

    bug = WorkerGroupError("Training failed due to worker errors:\n…", {1: KeyError("kp_source"), 0: ValueError("x")})
    assert why(bug) == "'kp_source'"
    assert why(ControllerError(OSError(errno.ENOSPC, "No space left on device"))) == "no space left on the device"
    assert why(RuntimeError("first\nsecond")) == "first"
    assert why(TaskError(KeyError("kp_source"))) == "'kp_source'"  # a Ray task's (a Tune trial's): its cause, not
    # Ray's "ray::ImplicitFunc.train() (pid=…)"


def test_a_user_error_raised_in_a_ray_worker_is_one_line(capsys) -> None:
    """A bad input found in a Ray Train worker (a corrupt checkpoint to resume from) or a Ray task reaches the
    driver inside Ray's errors: still one line and exit 2, naming the file, as if the driver had found it."""
    from ray.train import ControllerError, WorkerGroupError

    from fomm.checkpoint import CheckpointError

    bad = CheckpointError("/runs/r/c.pth.tar: not a readable checkpoint (truncated or corrupt?)")
    for err in (WorkerGroupError("Training failed due to worker errors:\n…", {0: bad}), ControllerError(bad),
                TaskError(bad)):
        assert run_cli(_raise(err), [], "prog") == 2
        assert capsys.readouterr().err == f"prog: error: {bad}\n"


def test_a_full_disk_under_rays_object_store_stops_a_batch_as_a_full_output_disk_does() -> None:
    from ray.exceptions import OutOfDiskError

    from services.failures import every_task_fails

    assert every_task_fails(TaskError(OutOfDiskError())) and every_task_fails(OSError(errno.ENOSPC, "full"))
    assert not every_task_fails(TaskError(ValueError("a damaged clip")))  # one item's own problem: recorded, go on
