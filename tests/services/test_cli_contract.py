"""services.cli / services.checks: the one-line user-error contract and the cheap input checks, in-process."""

from __future__ import annotations

import functools
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from services import checks
from services.cli import ArgumentParser, UserError, run_cli
from services.tracking import store_checks
from tests.conftest import fill_disk, read_only


def test_user_error_is_one_line_and_status_2_a_bug_raises(capsys) -> None:
    def main(argv: list[str]) -> int:
        if argv == ["user"]:
            raise UserError("--input x:\nno such folder")
        if argv == ["bug"]:
            raise KeyError("a bug")
        return 0

    assert run_cli(main, ["user"], "prog") == 2
    assert capsys.readouterr().err == "prog: error: --input x: | no such folder\n"
    assert run_cli(main, ["user", "--debug"], "prog") == 2  # --debug is taken out of argv
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "prog: error: --input x: | no such folder"
    with pytest.raises(KeyError):
        run_cli(main, ["bug"], "prog")
    assert run_cli(main, [], "prog") == 0


def test_a_control_character_in_an_error_line_is_shown_escaped(capsys) -> None:
    """A file name holding ESC (a terminal colour code) or NUL went to the console raw: it coloured the line, or
    vanished (a line break is ' | ', as in a multi-line message). Letters of any script are shown as they are."""
    def main(argv: list[str]) -> int:
        raise UserError(f"--source {argv[0]}: no such file")

    assert run_cli(main, ["a\x1b[31mred\x00\t\u00a0é.png"], "prog") == 2
    assert capsys.readouterr().err == "prog: error: --source a\\x1b[31mred\\x00\\t\\xa0é.png: no such file\n"


def test_config_error_of_an_imported_package_is_a_user_error(capsys) -> None:
    from fomm.config.loader import ConfigError

    def main(argv: list[str]) -> int:
        raise ConfigError("vox.yaml: unknown key 'num_kps'")

    assert run_cli(main, [], "train") == 2
    assert capsys.readouterr().err == "train: error: vox.yaml: unknown key 'num_kps'\n"


def test_the_packages_input_errors_are_user_errors_and_services_names_none_of_them(repo_root) -> None:
    from evaluation.extractors import BackendUnavailableError, MissingWeightsError
    from fomm.animator import AnimatorError
    from fomm.checkpoint import CheckpointError
    from services.errors import is_user_error
    from services.storage import StorageError
    from services.video_read import VideoError
    from training.data import DataError

    errors = [ConfigErrorOf(), CheckpointError("x"), AnimatorError("x"), VideoError("x"), StorageError("x"),
              DataError("x"), MissingWeightsError("b", "p", "h"), BackendUnavailableError("x")]
    assert all(is_user_error(e) for e in errors)
    assert not is_user_error(ValueError("a bug")) and not is_user_error(KeyError("a bug"))
    dotted = re.compile(r"[\"'](fomm|preprocessing|evaluation|animate|training|tuning)(\.[a-z_]+)+\.[A-Z]")
    for path in (repo_root / "services").rglob("*.py"):  # the ground floor names no class of a package above it
        assert not dotted.search(path.read_text()), path


def ConfigErrorOf() -> Exception:  # noqa: N802 - a factory named after what it makes
    from fomm.config.loader import ConfigError

    return ConfigError("x")


def test_argument_parser_errors_are_user_errors() -> None:
    parser = ArgumentParser(prog="p")
    parser.add_argument("--size", type=int, required=True)
    with pytest.raises(UserError, match="argument --size: invalid int value: 'x'"):
        parser.parse_args(["--size", "x"])
    assert parser.parse_args(["--size", "3", "--debug"]).size == 3


def test_a_reader_that_left_ends_the_command_as_sigpipe_would_without_a_traceback() -> None:
    """`fomm info … | head -1`, or a log collector gone: the summary's print met a closed pipe, and the command
    ended in a BrokenPipeError traceback, exit 1, after its work was done. Now it ends as a Unix tool killed by
    SIGPIPE is reported (128 + 13), without a word. A summary the reader takes is printed as always."""
    fomm = [str(Path(sys.executable).parent / "fomm"), "info", "--config", "configs/tiny-64.yaml"]
    root = Path(__file__).resolve().parents[2]
    gone = subprocess.Popen(fomm, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root)
    gone.stdout.close()  # before the command has imported anything: its first print meets a closed pipe
    assert (gone.wait(timeout=120), gone.stderr.read()) == (141, "")
    read = subprocess.run(fomm, capture_output=True, text=True, timeout=120, cwd=root)
    assert read.returncode == 0 and "parameters" in read.stdout, read.stderr


def test_a_current_folder_removed_under_the_shell_is_one_line(tmp_path) -> None:
    """`fomm` started in a folder another shell removed ended in MKL's "Cannot load libtorch_cpu.so" (exit 2)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    fomm = str(Path(sys.executable).parent / "fomm")
    code = f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); os.execv({fomm!r}, sys.argv[1:])"
    done = subprocess.run([sys.executable, "-c", code, fomm, "info", "--config", "/nowhere.yaml"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (2, "fomm info: error: the current folder was removed after the shell "
                                                 "entered it (cd to a folder that exists)\n")


def test_a_closed_standard_stream_is_refused_or_given_dev_null() -> None:
    """`fomm info >&-` exited 0 having shown nothing (Python makes a closed stdout None and print() a no-op); an error
    under it was an AttributeError traceback. A closed stderr takes /dev/null: the command runs, its status says."""
    fomm = f"{Path(sys.executable).parent / 'fomm'} info --config configs/tiny-64.yaml"
    root = Path(__file__).resolve().parents[2]
    shell = functools.partial(subprocess.run, capture_output=True, text=True, timeout=60, cwd=root)
    done = shell(["bash", "-c", f"{fomm} >&-"])
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "fomm info: error: standard output is closed (>&-): "
                                                                 "what the command prints would be lost (redirect it "
                                                                 "to a file or /dev/null)\n")
    done = shell(["bash", "-c", f"{fomm} 2>&-"])
    assert done.returncode == 0 and "total" in done.stdout
    assert shell(["bash", "-c", f"{fomm}.gone 2>&-"]).returncode == 2


def test_a_console_that_cannot_show_a_character_gets_it_escaped_not_a_traceback() -> None:
    """Under an ASCII or Latin-1 console (PYTHONIOENCODING, an old server's locale) the summary's × was a
    UnicodeEncodeError traceback, exit 1, after the work was done; it is escaped now, as Python escapes stderr."""
    fomm = [str(Path(sys.executable).parent / "fomm"), "info", "--config", "configs/tiny-64.yaml"]
    done = subprocess.run(fomm, capture_output=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
                          env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0 and b"frames 64\\xd764\\xd73" in done.stdout, done.stderr


def test_checks(tmp_path, monkeypatch) -> None:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "dir").mkdir()
    with pytest.raises(UserError, match=r"^--config .*/empty: is empty \(expected a YAML\)$"):
        checks.existing_file("--config", tmp_path / "empty", "a YAML")
    with pytest.raises(UserError, match="is a folder"):
        checks.existing_file("--config", tmp_path / "dir")
    os.mkfifo(tmp_path / "pipe")  # and a device: each was 'is a folder'
    for thing in ("/dev/null", tmp_path / "pipe"):
        with pytest.raises(UserError, match=rf"^--config {thing}: not a regular file \(a device or pipe\) \(expected"):
            checks.existing_file("--config", thing, "a YAML")
    checks.writable_dir("--out", tmp_path / "new" / "deeper")  # may be created later: fine, and not created now
    assert not (tmp_path / "new").exists()
    with pytest.raises(UserError, match="is a file, not a folder"):
        checks.writable_dir("--out", tmp_path / "empty" / "sub")
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "nowhere" / "x.mp4")  # an output through a symlink to nothing:
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")  # a traceback (mkdir, rename) after the work
    for check, path in ((checks.new_file, "gone.mp4"), (checks.writable_dir, "gone"),
                        (checks.writable_file, "gone/a.mp4"), (checks.writable_dir, "gone/deeper")):
        with pytest.raises(UserError, match=rf"^--out .*/{path}: (.*/gone is )?a symlink to .*/nowhere(/x.mp4)?, which "
                                            "does not exist"):
            check("--out", tmp_path / path)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")  # was "no such file"; a pipe was "a file, not a folder"
    with pytest.raises(UserError, match=r"^--config .*/loop: a loop of symlinks \(expected a YAML\)$"):
        checks.existing_file("--config", tmp_path / "loop", "a YAML")
    with pytest.raises(UserError, match=r"^--out .*/pipe: .*/pipe is a device or pipe, not a folder$"):
        checks.writable_dir("--out", tmp_path / "pipe")
    # 237 bytes is the longest .mp4 name: its temporary (.NAME.XXXXXXXX.tmp.mp4) takes 18 more, NAME_MAX is 255
    checks.writable_file("--out", tmp_path / ("a" * 233 + ".mp4"))
    with pytest.raises(UserError, match=r"^--out .*\.mp4: file name too long \(238 bytes; at most 237: it is "):
        checks.writable_file("--out", tmp_path / ("a" * 234 + ".mp4"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # released at once: nothing listens there
    with pytest.raises(UserError, match=rf"^--tracking-uri http://127.0.0.1:{port}: unreachable"):
        store_checks.tracking_uri("--tracking-uri", f"http://127.0.0.1:{port}")
    for memory in ("sqlite://", "sqlite:///:memory:"):  # exit 0 with a run id no store holds once it ends
        with pytest.raises(UserError, match=rf"^--tracking-uri {memory}: an in-memory SQLite store, gone when"):
            store_checks.tracking_uri("--tracking-uri", memory)
    with pytest.raises(UserError, match="folder .* does not exist"):
        store_checks.tracking_uri("--tracking-uri", f"sqlite:///{tmp_path}/missing/mlflow.db")
    # URLs urllib cannot split (it raised ValueError: a traceback), for the server and for an S3 endpoint alike
    for uri, why in (("http://localhost:abc", "Port could not be cast to integer value as 'abc'"),
                     ("http://localhost:99999", "Port out of range 0-65535"), ("http://[::1", "Invalid IPv6 URL")):
        with pytest.raises(UserError, match=rf"^--tracking-uri {re.escape(uri)}: not a valid URL \({why}\)$"):
            store_checks.tracking_uri("--tracking-uri", uri)
        with pytest.raises(UserError, match=rf"^--endpoint {re.escape(uri)}: not a valid URL \({why}\)$"):
            checks.reachable("--endpoint", uri)
    store_checks.tracking_uri("--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db")
    # a server's address typed without its scheme, or with a piece of it: it was taken for a folder store (or
    # 'unknown tracking URI scheme localhost')
    for uri, meant in (("127.0.0.1:5000", "http://127.0.0.1:5000"), ("localhost:5000", "http://localhost:5000"),
                       ("https//mlflow.example.com:443/p", "https://mlflow.example.com:443/p"),
                       ("http:127.0.0.1:5000", "http://127.0.0.1:5000")):
        with pytest.raises(UserError, match=rf"^--tracking-uri {uri}: a server's address without its scheme \(meant "
                                            rf"{meant}\?\)$"):
            store_checks.tracking_uri("--tracking-uri", uri)
    with pytest.raises(UserError, match=r"^--endpoint localhost:9000: expected an http\(s\):// URL \(meant "
                                        r"http://localhost:9000\?\)$"):  # an S3 endpoint alike
        checks.reachable("--endpoint", "localhost:9000")
    # MLflow 3 refuses a folder store once the run has begun: refused here, before any work, with the SQLite URI
    with pytest.raises(UserError, match=rf"^--tracking-uri mlruns: a folder store, which MLflow 3 refuses \(use "
                                        rf"sqlite:///{tmp_path}/mlruns/mlflow.db, or set MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.chdir(tmp_path)
        store_checks.tracking_uri("--tracking-uri", "mlruns")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's own opt-out: the folder store is the user's
    store_checks.tracking_uri("--tracking-uri", f"file://{tmp_path}/mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "ftp://somewhere")  # the default is checked under its own name
    with pytest.raises(UserError, match=r"^\$MLFLOW_TRACKING_URI ftp://somewhere: unknown tracking URI scheme"):
        store_checks.tracking_uri("--tracking-uri", None)


def test_a_database_or_databricks_store_this_machine_cannot_use_is_refused_before_the_work(tmp_path, monkeypatch):
    """A PostgreSQL or MySQL store without its Python driver was a traceback once MLflow opened it (after Ray had
    started); `databricks` was taken for a folder; a workspace with no sign-in set up failed after Ray started."""
    for uri, driver in (("postgresql://u@127.0.0.1:9/runs", "psycopg"), ("mysql://u@h/runs", "MySQLdb"),
                        ("postgresql+psycopg2://u@h/runs", "psycopg2")):  # a driver named in the scheme
        with pytest.raises(UserError, match=rf"^--tracking-uri {re.escape(uri)}: its database driver \({driver}\) is "
                                            r"not installed: install it, or log to an MLflow server"):
            store_checks.tracking_uri("--tracking-uri", uri)
    with pytest.raises(UserError, match=r"^--tracking-uri postgresql\+nodriver://h/runs: not a database URL"):
        store_checks.tracking_uri("--tracking-uri", "postgresql+nodriver://h/runs")
    cfg = tmp_path / "databrickscfg"
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(cfg))
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    monkeypatch.delenv("DATABRICKS_CONFIG_PROFILE", raising=False)
    with pytest.raises(UserError, match=rf"^--tracking-uri databricks: no Databricks sign-in: no DATABRICKS_HOST, "
                                        rf"and no profile 'DEFAULT' with a host in {cfg} \(set DATABRICKS_HOST"):
        store_checks.tracking_uri("--tracking-uri", "databricks")
    cfg.write_text("[lab]\nhost = https://lab.example\ntoken = t\n")
    store_checks.tracking_uri("--tracking-uri", "databricks://lab")  # signed in: whether it answers is the run's to see
    with pytest.raises(UserError, match=rf"^--tracking-uri databricks://prod: no Databricks sign-in: no profile "
                                        rf"'prod' with a host in {cfg} "):
        store_checks.tracking_uri("--tracking-uri", "databricks://prod")
    monkeypatch.setenv("DATABRICKS_HOST", "https://lab.example")
    store_checks.tracking_uri("--tracking-uri", "databricks")


def test_a_sqlite_store_mlflow_could_not_open_or_write_is_refused_before_the_work(tmp_path, monkeypatch) -> None:
    # MLflow retried each of these for 100 s (40 warning lines), then ended in a traceback, after Ray had started
    (tmp_path / "notes.db").write_text("not a database\n")
    with pytest.raises(UserError, match=rf"^--tracking-uri sqlite:///{tmp_path}/notes.db: {tmp_path}/notes.db is "
                                        r"not a SQLite database \(expected MLflow's store, or a new file\)$"):
        store_checks.tracking_uri("--tracking-uri", f"sqlite:///{tmp_path}/notes.db")
    store = tmp_path / "store"
    store.mkdir()
    # another application's database: MLflow added its ~50 tables to it, the user's file changed (its own are named)
    sqlite3.connect(tmp_path / "app.db").executescript("create table users (x); create table orders (x); "
                                                    "create table items (x); create table carts (x)").close()
    with pytest.raises(UserError, match=rf"^--tracking-uri sqlite:///{tmp_path}/app.db: {tmp_path}/app.db is another "
                                        r"application's SQLite database \(tables carts, items, orders, …\), not an "
                                        r"MLflow store: MLflow would add its own tables to it \(give a new file"):
        store_checks.tracking_uri("--tracking-uri", f"sqlite:///{tmp_path}/app.db")
    for typo in (f"sqlite:/{tmp_path}/m.db", f"sqlite://{tmp_path.name}/m.db", "sqlite:m.db"):  # a slash or two short
        with pytest.raises(UserError, match=rf"^--tracking-uri {typo}: expected sqlite:///PATH/mlflow.db \(three "):
            store_checks.tracking_uri("--tracking-uri", typo)
    (tmp_path / "cut.db").write_bytes(store_checks.SQLITE_HEADER + bytes(50))  # its header, then nothing readable
    with pytest.raises(UserError, match=rf"^--tracking-uri sqlite:///{tmp_path}/cut.db: {tmp_path}/cut.db is a "
                                        r"damaged SQLite database \("):
        store_checks.tracking_uri("--tracking-uri", f"sqlite:///{tmp_path}/cut.db", write=False)
    # an MLflow store being made by another process (its first table there, not yet alembic's)
    sqlite3.connect(store / "mlflow.db").execute("create table experiments (x)").connection.close()
    (store / "empty.db").touch()  # SQLite takes an empty file as a new database
    for name in ("mlflow.db", "empty.db", "new.db"):
        store_checks.tracking_uri("--tracking-uri", f"sqlite:///{store}/{name}")
    with read_only(store):
        for name in ("mlflow.db", "new.db"):  # SQLite writes the file and its journal beside it
            uri = f"sqlite:///{store}/{name}"
            with pytest.raises(UserError, match=rf"^--tracking-uri {uri}: (cannot write {store}/mlflow.db \(.+\)|"
                                                rf"folder {store}: cannot write under {store})$"):
                store_checks.tracking_uri("--tracking-uri", uri)
        store_checks.tracking_uri("--tracking-uri", f"sqlite:///{store}/mlflow.db", write=False)  # `runs compare` reads
        for options in ("?mode=ro", "?timeout=30"):  # SQLAlchemy's options were taken for part of the file's name
            store_checks.tracking_uri("--tracking-uri", f"sqlite:///{store}/mlflow.db{options}", write=False)
        for given in (f"file:{store}/mlflow.db?mode=ro&uri=true", f"{store}/mlflow.db?mode=ro&uri=true"):
            with pytest.raises(UserError, match=r"SQLite URI filenames \(uri=true\) are not taken"):  # a new store
                store_checks.tracking_uri("--tracking-uri", f"sqlite:///{given}", write=False)  # or ./file:/…
        # no --tracking-uri and no $MLFLOW_TRACKING_URI: the ./mlruns store a training run would create there
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.chdir(store)
        with pytest.raises(UserError, match=rf"^--tracking-uri \(the default\) sqlite:///{store}/mlruns/mlflow.db: "
                                            rf"folder {store}/mlruns: cannot write under {store}$"):
            store_checks.tracking_uri("--tracking-uri", None)
        store_checks.tracking_uri("--tracking-uri", None, write=False)
    assert sorted(p.name for p in store.iterdir()) == ["empty.db", "mlflow.db"]  # the checks made nothing


def test_a_bad_number_in_an_environment_variable_is_refused_naming_it(tmp_path, monkeypatch) -> None:
    """FOMM_TRACKING_END_WAIT_S was read with float() when MLflow's module loaded: 'abc' was a traceback at import,
    'nan' or '-1' a run end that never waited. It is checked with the tracking URI, before any work."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    for text, problem in (("abc", "expected a number, got 'abc'"), ("nan", "must be a finite number, got nan"),
                          ("-1", "must be ≥ 0, got -1")):
        monkeypatch.setenv("FOMM_TRACKING_END_WAIT_S", text)
        with pytest.raises(UserError, match=rf"^\$FOMM_TRACKING_END_WAIT_S: {re.escape(problem)}$"):
            store_checks.tracking_uri("--tracking-uri", uri)
    for text in ("30", " 0.5 ", ""):
        monkeypatch.setenv("FOMM_TRACKING_END_WAIT_S", text)
        store_checks.tracking_uri("--tracking-uri", uri)
    from services.tracking.run import Tracker

    monkeypatch.setenv("FOMM_TRACKING_END_WAIT_S", "7")
    with Tracker(uri, experiment="env") as tracker:
        assert tracker.end_wait_s == 7.0


def test_a_disk_without_room_is_refused_before_the_work(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(checks, "MIN_FREE_BYTES", 2**62)  # more than any disk has: every disk is "full"
    with pytest.raises(UserError, match=rf"^--out {tmp_path}/new: no space left on the device \(\d+ KiB free under "
                                        rf"{tmp_path}\)$"):
        checks.writable_dir("--out", tmp_path / "new")
    with pytest.raises(UserError, match="no space left on the device"):
        store_checks.tracking_uri("--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db")
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_may_not_hold_an_input(tmp_path) -> None:
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "tiny.yaml"
    config.write_text("x: 1\n")
    checks.not_an_input("--out", tmp_path / "eval", {"--config": config}, folder=True)
    checks.not_an_input("--out", tmp_path, {"--config": config})  # a file output beside inputs is fine
    with pytest.raises(UserError, match=rf"^--out {tmp_path}: holds the input --config {config} "):
        checks.not_an_input("--out", tmp_path, {"--config": config}, folder=True)


def test_an_output_may_not_be_or_sit_inside_an_input(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "alias").symlink_to(data)
    for out, problem in [(data, "is the input --data"), (tmp_path / "alias", "is the input --data"),
                         (data / "out", "is inside the input --data"), (tmp_path / "alias" / "a" / "b", "is inside")]:
        with pytest.raises(UserError, match=f"^--out {out}: {problem}"):
            checks.not_an_input("--out", out, {"--config": None, "--data": data})
    checks.not_an_input("--out", tmp_path / "out", {"--data": data})  # beside the input: fine
    checks.not_an_input("--out", data, {"--data": "s3://bucket/data"})  # other scheme: never the same
    with pytest.raises(UserError, match="inside the input --data s3://b/d/"):
        checks.not_an_input("--out", "s3://b/d/eval", {"--data": "s3://b/d/"})


def test_a_failed_run_names_the_resume_state_it_kept_and_removes_empty_folders_it_made(tmp_path, capsys) -> None:
    from services.stage import Stage, Summary

    def run(cfg: dict, args: object) -> Summary:
        work = tmp_path / cfg["out"] / "_work" / "parts"
        work.mkdir(parents=True)
        if cfg["wrote"]:
            (work / "video-1.parquet").write_bytes(b"clips")
        raise OSError(28, "No space left on device", str(work / "video-2.parquet"))

    def stage(wrote: bool) -> Stage:
        return Stage("job", "a job", lambda p: None, lambda a: {"out": "out", "wrote": wrote}, lambda c: None, run,
                     keeps=lambda c: {str(tmp_path / c["out"]): "rerun the same command to resume",
                                      str(tmp_path): ""})  # "": cleaned if made and left empty, never named

    assert stage(wrote=True).main([]) == 2
    out = tmp_path / "out"
    assert capsys.readouterr().err == (f"job: error: {out}/_work/parts/video-2.parquet: no space left on the device "
                                       f"(work done so far is kept in {out}: rerun the same command to resume)\n")
    assert (out / "_work" / "parts" / "video-1.parquet").exists()
    (out / "_work" / "parts" / "video-1.parquet").unlink()
    for folder in (out / "_work" / "parts", out / "_work", out):
        folder.rmdir()
    assert stage(wrote=False).main([]) == 2  # nothing resumable made: the folders it made go, the line says no more
    assert capsys.readouterr().err == f"job: error: {out}/_work/parts/video-2.parquet: no space left on the device\n"
    assert list(tmp_path.iterdir()) == []

    def made_nothing(cfg: dict, args: object) -> Summary:
        (tmp_path / cfg["out"] / "_work").mkdir(parents=True)
        return Summary(status=2, problem="job: error: nothing made")

    keeps = {str(out): "rerun the same command to resume"}
    assert Stage("job", "a job", lambda p: None, lambda a: {"out": "out"}, lambda c: None, made_nothing,
                 keeps=lambda c: keeps).main([]) == 2  # failed without raising: its empty folders go too
    assert capsys.readouterr().err == "job: error: nothing made\n" and list(tmp_path.iterdir()) == []


def test_a_tracking_uri_must_answer_as_mlflow(mlflow_server, tmp_path) -> None:
    """A real MLflow server passes; another web server (a proxy, a dashboard) is refused at once, where MLflow's
    client would retry for minutes."""
    import http.server
    import threading

    store_checks.tracking_uri("--tracking-uri", mlflow_server)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(UserError, match=rf"^--tracking-uri {uri}: not an MLflow tracking server \(HTTP 404 "):
            store_checks.tracking_uri("--tracking-uri", uri)
    finally:
        server.shutdown()
        server.server_close()


def test_an_experiment_whose_artifacts_this_machine_uploads_to_s3_needs_credentials(mlflow_server, no_s3_credentials,
                                                                                       repo_root, monkeypatch) -> None:
    """A server whose artifact root is s3:// (no --serve-artifacts): each client uploads a run's artifacts itself.
    Without S3 credentials a training run failed at its first artifact after Ray had started, and its run stayed
    RUNNING. The check refuses an existing such experiment; a run that meets it anyway ends FAILED, naming it."""
    from mlflow import MlflowClient

    from services.tracking.run import END_REASON

    client = MlflowClient(mlflow_server)
    client.create_experiment("on-s3", artifact_location="s3://fomm-artifacts/runs")
    with pytest.raises(UserError, match=rf"^--tracking-uri {mlflow_server}: experiment 'on-s3' keeps its artifacts at "
                                        r"s3://fomm-artifacts/runs, uploaded from this machine: no S3 credentials \("):
        store_checks.tracking_uri("--tracking-uri", mlflow_server, experiment="on-s3")
    store_checks.tracking_uri("--tracking-uri", mlflow_server, write=False, experiment="on-s3")  # `runs compare` reads
    store_checks.tracking_uri("--tracking-uri", mlflow_server, experiment="new")  # the server's root, not known yet
    # in a process of its own: boto3's default session keeps the keys it found first (an earlier test's moto keys)
    opening = f"""from services.tracking.run import Tracker
tracker = Tracker({mlflow_server!r}, "on-s3")
print(tracker.run_id, flush=True)
with tracker.ended_if_raises():
    tracker.log_config({{"a": 1}})
"""
    done = subprocess.run([sys.executable, "-c", opening], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and re.search(r"UserError: --tracking-uri .+: the run's artifact store s3://fomm-"
                                              r"artifacts/runs/\w+/artifacts: S3: Unable to locate credentials",
                                              done.stderr), done.stderr
    run = client.get_run(done.stdout.split()[0])
    assert run.info.status == "FAILED" and "Unable to locate credentials" in run.data.tags[END_REASON]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    store_checks.tracking_uri("--tracking-uri", mlflow_server, experiment="on-s3")


def test_a_ray_address_where_no_cluster_answers_is_refused_at_once(monkeypatch) -> None:
    """ray.init waits minutes on a dead address: the address is tried first (a closed port answers at once), and
    a malformed one or a dashboard URL is named as such, for the flag or for $RAY_ADDRESS."""
    import socket

    from services.ray_address import check_address

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    check_address(None)  # a local Ray: nothing to try
    with pytest.raises(UserError, match=rf"^--ray-address 127.0.0.1:{dead}: no Ray cluster answers there"):
        check_address(f"127.0.0.1:{dead}")
    with pytest.raises(UserError, match=r"^--ray-address head: expected HOST:PORT or auto$"):
        check_address("head")
    with pytest.raises(UserError, match=r"^--ray-address http://h:8265: a dashboard URL is for `ray job submit`"):
        check_address("http://h:8265")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{dead}")
    with pytest.raises(UserError, match=rf"^\$RAY_ADDRESS 127.0.0.1:{dead}: no Ray cluster answers there"):
        check_address(None)
    # Ray Client: a stage's first dataset failed in the driver (`'Worker' object has no attribute 'core_worker'`, a
    # traceback after Ray and the run had started); a client port that opened no session, 30 s then a traceback
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    with pytest.raises(UserError, match=r"^\$RAY_ADDRESS ray://head:10001: a Ray Client address; Ray Data, which "
                                        r"every stage uses, does not run over Ray Client: submit the stage with "
                                        r"`ray job submit --address http://HOST:8265"):
        check_address(None)
    from services import ray_address

    monkeypatch.setattr(ray_address, "ANSWER_S", 0.5)
    with socket.socket() as server:  # takes connections, never answers (ray.init waited minutes; joined: every test)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with pytest.raises(UserError, match=rf"^--ray-address 127.0.0.1:{port}: no Ray cluster answers there \(the "
                                            r"port takes connections, but nothing answered within 0.5 s"):
            check_address(f"127.0.0.1:{port}")


def test_ray_address_auto_where_no_ray_runs_is_one_line_before_any_output(tmp_path) -> None:
    """`--ray-address auto` (or RAY_ADDRESS=auto) joins the Ray that `ray start` ran on this machine: with none, it
    was ray.init's ConnectionError traceback, exit 1, the output's work folder made. The test runs the pipeline in
    a process namespace of its own (root's), where no Ray runs, whatever else this machine runs."""
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": str(tmp_path)}
    out = tmp_path / "ds"
    command = [sys.executable, str(Path(__file__).resolve().parents[2] / "pipelines" / "preprocess.py"),
               "--input", "synthetic:2", "--output", str(out), "--kind", "none", "--size", "32"]
    for flag, extra in (("--ray-address", {}), ("$RAY_ADDRESS", {"RAY_ADDRESS": "auto"})):
        args = command + ["--ray-address", "auto"] * (flag == "--ray-address")
        done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", *args], capture_output=True, text=True,
                              timeout=120, env={**env, **extra})
        if "unshare failed" in done.stderr or "unshare:" in done.stderr[:9]:
            pytest.skip("a process namespace of its own needs root")
        assert (done.returncode, done.stderr.splitlines()) == (2, [
            f"preprocess: error: {flag} auto: Could not find any running Ray instance on this machine (start one "
            "with `ray start --head`, or give its HOST:PORT)"])
        assert not out.exists()


def test_a_full_disk_under_rays_temporary_folder_is_one_line_before_any_output(small_disk, tmp_path) -> None:
    """A local Ray keeps its session in RAY_TMPDIR (else TMPDIR, else /tmp): on a full disk its start waited for a
    file it could not write, then failed with a traceback (exit 1), the output folder already made."""
    fill_disk(small_disk)
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": str(small_disk)}
    out = tmp_path / "ds"
    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "pipelines" / "preprocess.py"),
                           "--input", "synthetic:8", "--output", str(out), "--kind", "none", "--size", "32"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert (done.returncode, done.stderr.splitlines()) == (2, [
        f"preprocess: error: {small_disk}: no space left on the device for a local Ray's session (0 KiB free; free "
        "some, or set RAY_TMPDIR to a folder with room)"])
    assert not out.exists()


def test_a_local_ray_starts_with_token_authentication_under_a_home_it_cannot_write(tmp_path) -> None:
    """A new local Ray saves its token in ~/.ray/auth_token: under a home this user cannot write (a container's
    arbitrary user with HOME=/) every stage failed at ray.init. The token now lives in the driver's environment,
    and the cluster still asks for it."""
    home = tmp_path / "home"
    home.mkdir()
    script = ("from services.ray_start import ensure_ray; ensure_ray(num_cpus=1); import os, ray; "
              "from ray._raylet import AuthenticationMode, get_authentication_mode; "
              "print(get_authentication_mode() == AuthenticationMode.TOKEN, len(os.environ['RAY_AUTH_TOKEN']), "
              "ray.get(ray.remote(lambda: 6 * 7).remote()))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    with read_only(home):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              env={**env, "HOME": str(home)}, cwd=Path(__file__).resolve().parents[2])
    assert (done.returncode, done.stdout.split()) == (0, ["True", "64", "42"]), done.stderr[-3000:]
    assert list(home.iterdir()) == []


def test_a_rays_temporary_folder_this_user_cannot_write_is_one_line_before_any_output(tmp_path) -> None:
    """Another user's or a read-only RAY_TMPDIR: ray.init failed once the stage had made its output folder."""
    session = tmp_path / "session"
    session.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": str(session)}
    out = tmp_path / "ds"
    with read_only(session):
        done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "pipelines" /
                                                   "preprocess.py"), "--input", "synthetic:2", "--output", str(out),
                               "--kind", "none", "--size", "32"], capture_output=True, text=True, timeout=120, env=env)
    assert (done.returncode, done.stderr.splitlines()) == (2, [
        f"preprocess: error: a local Ray's session folder {session}/ray: cannot write under {session} (set "
        "RAY_TMPDIR to a folder this user can write)"])
    assert not out.exists()


def test_a_cluster_that_refuses_the_drivers_token_is_one_line_at_once(tmp_path) -> None:
    """A Ray cluster with token authentication (what `ray start` turns on, and infra/ray-cluster.yaml): a driver
    without its token was refused for 30 s, a warning a second, then a traceback. The check asks the cluster's GCS
    once: no token or a wrong one is one line naming the address; the cluster's token passes."""
    import shutil
    import time

    from tests.ray_cluster import RayCluster

    token = "fomm-test-token-0123456789abcdef"
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    cluster = RayCluster(tmp_path, {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}, cpus=0)
    check = [sys.executable, "-c", "from services.ray_address import check_address; import sys; "
             "check_address(sys.argv[1])", cluster.address]
    try:
        cluster.start_head()
        deadline = time.time() + 120
        while subprocess.run(check, env={**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token},
                             capture_output=True, timeout=60).returncode:  # until its GCS answers
            assert time.time() < deadline, (tmp_path / "head.log").read_text()[-3000:]
            time.sleep(1)
        refused = (f"--ray-address {cluster.address}: the Ray cluster refused this driver's authentication token "
                   "(set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN, or ~/.ray/auth_token, to the cluster's token)")
        for auth in ({"RAY_AUTH_MODE": "disabled"}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"}):
            started = time.time()
            done = subprocess.run(check, env={**base, **auth}, capture_output=True, text=True, timeout=60)
            assert done.stderr.strip().splitlines()[-1] == f"services.errors.UserError: {refused}", done.stderr
            assert "gcs_client" not in done.stderr and time.time() - started < 20  # no retries, no C++ warning
        # no --ray-address, no $RAY_ADDRESS, but a Ray that `ray start` runs on this machine (its address in
        # <Ray's temporary folder>/ray_current_cluster): ray.init joined it, then refused the local Ray's num_cpus
        # with a traceback. A stage starts its own local Ray, as its help says, and leaves that cluster alone
        rtmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths have a length limit
        try:
            (rtmp / "ray").mkdir()
            (rtmp / "ray" / "ray_current_cluster").write_text(cluster.address)
            script = ("from services.ray_start import ensure_ray; ensure_ray(num_cpus=1); import ray; "
                      "print(ray.get_runtime_context().gcs_address, ray.get(ray.remote(lambda: 6 * 7).remote()))")
            done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                                  env={**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_TMPDIR": str(rtmp)},
                                  cwd=Path(__file__).resolve().parents[2])
            assert done.returncode == 0, done.stderr[-3000:]
            note, result = done.stdout.splitlines()
            assert note == (f"note: a Ray cluster started with `ray start` runs on this machine ({cluster.address}); "
                            "this run starts a local Ray of its own (--ray-address auto runs it on that cluster)")
            gcs, answer = result.split()
            assert gcs != cluster.address and answer == "42"
        finally:
            shutil.rmtree(rtmp, ignore_errors=True)
    finally:
        cluster.stop()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)


def test_mlflow_experiment_name_is_the_default_experiment_of_every_stage_that_logs_or_reads_runs(monkeypatch, capsys):
    """MLflow's users set MLFLOW_EXPERIMENT_NAME for every tool: train, tune, evaluate, the benchmark and `fomm runs
    compare` take it where --experiment is not given (their runs went to fomm-train, fomm-eval, …); a typo of it is
    refused like any other."""
    from evaluation.cli import eval_flags
    from evaluation.compare import add_flags
    from training.job import add_train_flags

    def experiments() -> list[str]:
        train, tune, evaluate, compare = (ArgumentParser(prog=name) for name in ("train", "tune", "e", "c"))
        add_train_flags(train)
        add_train_flags(tune, "fomm-tune")
        eval_flags(evaluate, "fomm-eval")
        add_flags(compare)
        job = ["--config", "c", "--data", "d", "--storage", "s"]
        return [train.parse_args(job).experiment, tune.parse_args(job).experiment,
                evaluate.parse_args(["--checkpoint", "k", "--data", "d"]).experiment, compare.parse_args([]).experiment,
                compare.parse_args(["-e", "other"]).experiment]

    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    assert experiments() == ["fomm-train", "fomm-tune", "fomm-eval", "fomm-eval", "other"]
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "faces-ft")
    assert experiments() == ["faces-ft", "faces-ft", "faces-ft", "faces-ft", "other"]
    assert run_cli(lambda argv: 0, [], "prog") == 0
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAM", "faces-ft")
    assert run_cli(lambda argv: 0, [], "prog") == 2
    assert capsys.readouterr().err == ("prog: error: $MLFLOW_EXPERIMENT_NAM: not a setting of MLflow (did you mean "
                                       "MLFLOW_EXPERIMENT_NAME?)\n")


def test_a_misspelt_setting_is_named_with_the_one_meant_and_the_list_of_settings_is_whole(monkeypatch, capsys):
    """FOMM_ROOM_WAIT (for FOMM_ROOM_WAIT_S) was ignored: the run waited its default 600 s for room; FOMM_S3_ENDPIONT
    sent the job to AWS's own endpoint; MLFLOW_TRACKING_URL, the runs to ./mlruns. Every command refuses such a typo
    in one line; other FOMM_ names, and MLflow's own variables, pass."""
    from services.cli import SETTINGS

    product = Path(__file__).resolve().parents[2]
    read = {name for folder in ("services", "fomm", "preprocessing", "animate", "training", "tuning", "evaluation",
                                "pipelines") for path in (product / folder).rglob("*.py")
            for name in re.findall(r"\bFOMM_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())}
    assert read == set(SETTINGS)  # a setting added anywhere is listed, so its typos are found too
    monkeypatch.setenv("FOMM_TORCH_INDEX_URL", "https://example.invalid")  # the image build's: no setting's typo
    assert run_cli(lambda argv: 0, [], "prog") == 0
    for typo, meant in (("FOMM_ROOM_WAIT", "FOMM_ROOM_WAIT_S"), ("FOMM_S3_ENDPIONT", "FOMM_S3_ENDPOINT")):
        monkeypatch.setenv(typo, "5")
        assert run_cli(lambda argv: 0, [], "prog") == 2
        assert capsys.readouterr().err == f"prog: error: ${typo}: not a setting of fomm-pipeline (did you mean {meant}?)\n"
        monkeypatch.delenv(typo)
    monkeypatch.setenv("MLFLOW_TRACKING_DIR", "/x")  # MLflow's own, a letter or two off MLFLOW_TRACKING_URI: passes
    assert run_cli(lambda argv: 0, [], "prog") == 0
    monkeypatch.setenv("MLFLOW_TRACKING_URL", "http://127.0.0.1:5000")  # the runs went to ./mlruns
    assert run_cli(lambda argv: 0, [], "prog") == 2
    assert capsys.readouterr().err == ("prog: error: $MLFLOW_TRACKING_URL: not a setting of MLflow (did you mean "
                                       "MLFLOW_TRACKING_URI?)\n")
    monkeypatch.delenv("MLFLOW_TRACKING_URL")
    monkeypatch.setenv("RAY_ADRESS", "head:6379")  # the job ran on a local Ray, not on the cluster
    assert run_cli(lambda argv: 0, [], "prog") == 2
    assert capsys.readouterr().err == "prog: error: $RAY_ADRESS: not a setting of Ray (did you mean RAY_ADDRESS?)\n"
    monkeypatch.setenv("FOMM_ROOM_WAIT", "5")
    assert run_cli(lambda argv: 0, ["--help"], "prog") == 0  # help whatever the environment
