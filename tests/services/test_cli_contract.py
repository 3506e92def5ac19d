"""services.cli / services.checks: the one-line user-error contract and the cheap input checks, in-process."""

from __future__ import annotations

import socket

import pytest

from services import checks
from services.cli import ArgumentParser, UserError, run_cli


def test_user_error_is_one_line_and_status_2_a_bug_raises(capsys) -> None:
    def main(argv: list[str]) -> int:
        if argv == ["user"]:
            raise UserError("--input x:\nno such folder")
        if argv == ["bug"]:
            raise KeyError("a bug")
        return 0

    assert run_cli(main, ["user"], "prog") == 2
    assert capsys.readouterr().err == "prog: error: --input x: | no such folder\n"
    assert run_cli(main, ["user", "--debug"], "prog", status=1) == 1  # --debug is taken out of argv
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "prog: error: --input x: | no such folder"
    with pytest.raises(KeyError):
        run_cli(main, ["bug"], "prog")
    assert run_cli(main, [], "prog") == 0


def test_config_error_of_an_imported_package_is_a_user_error(capsys) -> None:
    from fomm.config import ConfigError

    def main(argv: list[str]) -> int:
        raise ConfigError("vox.yaml: unknown key 'num_kps'")

    assert run_cli(main, [], "train") == 2
    assert capsys.readouterr().err == "train: error: vox.yaml: unknown key 'num_kps'\n"


def test_argument_parser_errors_are_user_errors() -> None:
    parser = ArgumentParser(prog="p")
    parser.add_argument("--size", type=int, required=True)
    with pytest.raises(UserError, match="argument --size: invalid int value: 'x'"):
        parser.parse_args(["--size", "x"])
    assert parser.parse_args(["--size", "3", "--debug"]).size == 3


def test_checks(tmp_path, monkeypatch) -> None:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "dir").mkdir()
    with pytest.raises(UserError, match=r"^--config .*/empty: is empty \(expected a YAML\)$"):
        checks.existing_file("--config", tmp_path / "empty", "a YAML")
    with pytest.raises(UserError, match="is a folder"):
        checks.existing_file("--config", tmp_path / "dir")
    checks.writable_dir("--out", tmp_path / "new" / "deeper")  # may be created later: fine, and not created now
    assert not (tmp_path / "new").exists()
    with pytest.raises(UserError, match="is a file, not a folder"):
        checks.writable_dir("--out", tmp_path / "empty" / "sub")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # released at once: nothing listens there
    with pytest.raises(UserError, match=rf"^--tracking-uri http://127.0.0.1:{port}: unreachable"):
        checks.tracking_uri("--tracking-uri", f"http://127.0.0.1:{port}")
    with pytest.raises(UserError, match="folder .* does not exist"):
        checks.tracking_uri("--tracking-uri", f"sqlite:///{tmp_path}/missing/mlflow.db")
    checks.tracking_uri("--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "ftp://somewhere")  # the default is checked under its own name
    with pytest.raises(UserError, match=r"^\$MLFLOW_TRACKING_URI ftp://somewhere: unknown tracking URI scheme"):
        checks.tracking_uri("--tracking-uri", None)
