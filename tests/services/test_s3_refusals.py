"""S3 refusing the keys (a real moto server with its authentication on, which knows no keys): every check names the
flag and says so before any job starts, instead of "no bucket there" (a HEAD's bare 403 read as a missing bucket)
or a bare "Forbidden"; a read deep in a job says it too, and a batch stops on it (every later request would fail)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services import checks, storage
from services.failures import environment_failure, every_task_fails
from services.storage import StorageError
from tests.conftest import BIN, S3_CREDENTIALS, free_port, no_s3_credentials_here, wait_http

REPO = Path(__file__).resolve().parents[2]
REFUSED = ("S3 refused access (The AWS Access Key Id you provided does not exist in our records; check the "
           "credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and the bucket's "
           "permissions)")


@pytest.fixture(scope="module")
def refusing_s3() -> Iterator[str]:
    """A moto S3 endpoint that authenticates every request (INITIAL_NO_AUTH_ACTION_COUNT=0) and has no users."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(endpoint + "/moto-api/", timeout=60)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def wrong_keys(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")


def test_every_check_says_the_keys_were_refused(refusing_s3, wrong_keys):
    for check, flag, path in ((checks.writable_storage, "--output", "s3://bucket/ds"),
                              (checks.storage_reachable, "--data", "s3://bucket/shards"),
                              (checks.existing_file, "--checkpoint", "s3://bucket/ckpt.pth.tar")):
        with pytest.raises(StorageError) as raised:
            check(flag, path, endpoint=refusing_s3)
        assert str(raised.value) == f"{flag} {path}: {REFUSED}"


def test_a_batch_stops_on_refused_keys_with_one_line(refusing_s3, wrong_keys, tiny_config_path, tmp_path):
    """animate_batch's rows: keys S3 refuses fail every pair alike, so the job stops at the first (not one error row
    per pair), and its line says why (s3fs's own message is a bare "Forbidden" or S3's text without the cause)."""
    from animate.batch import COLUMNS, animate_rows
    from fomm.animator import Animator

    row = ("s3://bucket/in/face.jpg", "s3://bucket/in/talk.mp4", str(tmp_path / "out.mp4"))
    rows = {c: np.array([p], dtype=object) for c, p in zip(COLUMNS, row)}
    with pytest.raises(StorageError) as raised:
        animate_rows(rows, Animator.from_config(tiny_config_path, random_init=True), {}, endpoint=refusing_s3)
    assert every_task_fails(raised.value)
    line = environment_failure(raised.value.__cause__)
    assert line == ("S3 refused access: The AWS Access Key Id you provided does not exist in our records. (check the "
                    "credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and the bucket's "
                    "permissions)")
    assert str(raised.value) == f"s3://bucket/in/face.jpg: cannot download ({line})"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stage, args", [
    ("train", ["--data", "s3://bucket/shards", "--config", "{tiny}", "--storage", "{w}/runs"]),
    ("animate_batch", ["--pairs", "s3://bucket/pairs.csv", "--config", "{tiny}", "--random-init"]),
])
def test_the_stages_take_an_endpoint_flag_and_answer_one_line(refusing_s3, wrong_keys, tiny_config_path, tmp_path,
                                                              stage, args):
    """train and animate_batch take --endpoint as preprocess and evaluate do (it was "unrecognized argument")."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "FOMM_S3_ENDPOINT", "RAY_ADDRESS")}
    cmd = [sys.executable, str(REPO / "pipelines" / f"{stage}.py"),
           *(a.format(tiny=tiny_config_path, w=tmp_path) for a in args), "--endpoint", refusing_s3]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    flag, path = args[0], args[1]
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"{stage}: error: {flag} {path}: {REFUSED}"]
    assert list(tmp_path.iterdir()) == []  # nothing written (no run folder, no ./mlruns)


def test_a_missing_folder_or_empty_s3_file_is_named_before_any_job(moto_s3):
    root = f"s3://{moto_s3['bucket']}/refusals"
    storage.write_bytes(f"{root}/empty.pth.tar", b"")
    storage.write_bytes(f"{root}/dir/ckpt.pth.tar", b"x")
    for path, problem in ((f"{root}/nothing.pth.tar", "no such file"), (f"{root}/dir", "is a folder"),
                          (f"{root}/empty.pth.tar", "is empty")):
        with pytest.raises(checks.UserError, match=f"^--checkpoint {path}: {problem} \\(expected a checkpoint"):
            checks.existing_file("--checkpoint", path, "a checkpoint file")
    checks.existing_file("--checkpoint", f"{root}/dir/ckpt.pth.tar", "a checkpoint file")
    with pytest.raises(StorageError, match="^--data s3://no-such-bucket/x: no bucket 'no-such-bucket' there"):
        checks.storage_reachable("--data", "s3://no-such-bucket/x")


def test_an_endpoint_that_takes_connections_and_never_answers_is_refused_within_the_probes_wait(monkeypatch):
    """A wrong port that accepts TCP and never speaks HTTP: the check's request waited botocore's 60 s a try, 11 tries,
    5 rounds of s3fs's own (a train command was still waiting after 300 s). Its one try now waits S3_ANSWER_S."""
    import socket
    import time

    monkeypatch.setattr(checks, "S3_ANSWER_S", 1.0)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"  # the kernel accepts; nobody answers
        started = time.monotonic()
        with pytest.raises(StorageError, match=rf"^--data s3://bucket/ds: S3 endpoint {endpoint}: no answer within "
                                               r"1 s \(is it an S3 endpoint, at the right port\?\)$"):
            checks.storage_reachable("--data", "s3://bucket/ds", endpoint)
        assert time.monotonic() - started < 10


@pytest.mark.parametrize(("settings", "line"), [
    ({"AWS_PROFILE": "nope"}, "S3: The config profile (nope) could not be found"),  # a typo, or another machine's
    ({"AWS_DEFAULT_REGION": "us east"}, "S3: Provided region_name 'us east' doesn't match a supported format"),
    ({"AWS_CONFIG_FILE": "{unparsable}"}, "S3: Unable to parse config file: {unparsable}"),
    ({"AWS_CONFIG_FILE": "{failing_process}", "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None},
     "S3: no credentials: Error when retrieving credentials from custom-process"),  # as an expired sign-in fails
])
def test_aws_settings_no_request_passes_are_one_line_naming_the_flag(refusing_s3, wrong_keys, monkeypatch, tmp_path,
                                                                     settings, line):
    """botocore refuses such settings before any request (a traceback, exit 1, was all): the input check names the
    flag, any other place gives the same line, and a batch stops on it as on missing keys."""
    import botocore.session

    from services.s3 import s3_filesystem

    files = {"unparsable": tmp_path / "config", "failing_process": tmp_path / "process"}
    files["unparsable"].write_text("[default\nregion = us-east-1\n")
    files["failing_process"].write_text("[default]\ncredential_process = /bin/false\n")
    names = {name: str(path) for name, path in files.items()}
    for key, value in settings.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value.format(**names))
    line = line.format(**names)
    s3_filesystem.cache_clear()  # a filesystem made under the session's own settings would not ask again
    try:
        with pytest.raises(StorageError) as raised:
            checks.storage_reachable("--data", "s3://bucket/shards", endpoint=refusing_s3)
        assert str(raised.value).startswith(f"--data s3://bucket/shards: {line} (")
        with pytest.raises(Exception) as raw:  # noqa: PT011 - botocore's own class, whichever it is
            session = botocore.session.get_session()
            session.get_credentials()
            session.create_client("s3", region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
        assert environment_failure(raw.value).startswith(f"{line} (") and every_task_fails(raw.value)
    finally:
        s3_filesystem.cache_clear()


def test_a_registered_version_whose_files_are_on_s3_says_why_they_cannot_be_copied(
        moto_s3, refusing_s3, mlflow_server, tiny_config_path, tmp_path):
    """`--checkpoint models:/…` of a version a server keeps on S3 (its experiment's artifact root), run as `fomm
    info` on a machine without S3 credentials, or whose keys S3 refuses: MLflow's "Failed to download artifacts from
    path 'model'" was shown beside the cache's free space, as if the disk were full. With good keys the file comes
    back whole."""
    from mlflow import MlflowClient

    from services.tracking.registry import register_run_files

    client = MlflowClient(mlflow_server)
    root = f"s3://{moto_s3['bucket']}/registry"
    run = client.create_run(client.create_experiment("registry-on-s3", artifact_location=root))
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "model.pth.tar").write_bytes(b"weights")
    register_run_files(mlflow_server, "on-s3", run.info.run_id, tmp_path / "files")
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = [str(BIN / "fomm"), "info", "--config", str(tiny_config_path), "--checkpoint", "models:/on-s3/1"]
    where = f"fomm info: error: --checkpoint models:/on-s3/1: its files at {root}/{run.info.run_id}/artifacts: "
    without = {k: v for k, v in env.items() if k not in S3_CREDENTIALS} | no_s3_credentials_here(tmp_path)
    refused = {**env, "AWS_ENDPOINT_URL": refusing_s3, "FOMM_S3_ENDPOINT": refusing_s3}  # keys it does not know
    for settings, why in ((without, "no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
                                    "AWS_PROFILE))"), (refused, "S3 refused access (The AWS Access Key Id you ")):
        done = subprocess.run(command, env=settings, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.startswith(where + why), done.stderr
        assert done.stderr.count("\n") == 1
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    copied = list((tmp_path / "cache" / "fomm" / "models").glob("on-s3-v1-*/model.pth.tar"))
    assert [p.read_bytes() for p in copied] == [b"weights"], done.stderr
