"""The model registry: a run's files as a new version of a registered model; the newest version; its files."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException

from services.errors import UserError
from services.failures import why
from services.fields import env_number
from services.tracking.store import default_tracking_uri, make_client


class NotCopied(UserError):
    """A registered version's files could not be copied here; `source`: where they are ('' where unknown)."""

    def __init__(self, message: str, source: str) -> None:
        super().__init__(message)
        self.source = source


CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".ckpt")
MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+|latest)|@(?P<alias>[\w-]+))/?")
ALIAS = re.compile(r"(?!latest$)(?![vV]\d+$)[\w-]{1,255}")  # MLflow's rule: 'latest' and v<N> are its own names
# MLflow's rule (not blank, no '/' or ':', not '.' or starting '..'), and no '@': models:/NAME@ALIAS could not name it
MODEL_NAME = re.compile(r"(?!\.$)(?!\.\.)[^/:@]*[^/:@\s][^/:@]*")


def register_model_version(tracking_uri: str | None, name: str, source: str, run_id: str | None = None,
                           tags: dict[str, str] | None = None) -> dict:
    """Register `source` (e.g. runs:/<id>/model or a path) as a new version of model `name` (created when new)."""
    client = make_client(tracking_uri)
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # auth, network, …: not "already registered"
            raise
    mv = client.create_model_version(name, source, run_id=run_id, tags=tags)
    return {"name": name, "version": int(mv.version), "source": mv.source, "run_id": mv.run_id}


def register_run_files(tracking_uri: str | None, name: str, run_id: str, files: str | Path,
                       tags: dict[str, str] | None = None, artifact_path: str = "model") -> dict:
    """Log a folder as artifacts `artifact_path` of run `run_id` and register them as a version of `name`."""
    make_client(tracking_uri).log_artifacts(run_id, str(files), artifact_path)
    return register_model_version(tracking_uri, name, f"runs:/{run_id}/{artifact_path}", run_id, tags)


def latest_model_version(tracking_uri: str | None, name: str) -> dict:
    """The newest version of registered model `name`: {name, version, source, run_id, tags}."""
    client = make_client(tracking_uri)
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise LookupError(f"registered model {name!r}: no versions at {client.tracking_uri}")
    mv = max(versions, key=lambda v: int(v.version))
    return {"name": name, "version": int(mv.version), "source": mv.source, "run_id": mv.run_id,
            "tags": dict(mv.tags)}


def set_alias(tracking_uri: str | None, name: str, alias: str, version: int) -> None:
    """Point alias `alias` of registered model `name` at `version` (models:/NAME@ALIAS then names it)."""
    make_client(tracking_uri).set_registered_model_alias(name, alias, str(version))


def download_model_version(tracking_uri: str | None, name: str, version: int, dst: str | Path) -> Path:
    """Download a registered model version's files into `dst`; the local path. Through its source URI: MLflow's
    `models:/` resolver reads the process-wide registry URI, not the one given."""
    source = make_client(tracking_uri).get_model_version_download_uri(name, str(version))
    Path(dst).mkdir(parents=True, exist_ok=True)
    return Path(download_artifacts(artifact_uri=source, dst_path=str(dst),
                                   tracking_uri=tracking_uri or default_tracking_uri()))


def model_uri(flag: str, value: str) -> re.Match:
    """The parts of a registered model version's URI (name, and version or alias); else a UserError naming the
    flag."""
    if not (uri := MODEL_URI.fullmatch(value)):
        raise UserError(f"{flag} {value}: expected models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS")
    return uri


def registered_checkpoint(flag: str, value: str, store: str) -> str:
    """The local path of the checkpoint file of the registered model version `value` names (models:/NAME/VERSION,
    models:/NAME/latest, models:/NAME@ALIAS, as `train --model-name` registers them) in the tracking store `store`,
    copied once into $XDG_CACHE_HOME/fomm/models (else ~/.cache/…); a UserError naming the flag where the store has
    no such version. Called through services.tracking.store_checks.registered_checkpoint, which checks the store
    first."""
    uri = model_uri(flag, value)
    name, client = uri["name"], make_client(store)
    try:
        if uri["alias"]:
            version = client.get_model_version_by_alias(name, uri["alias"])
        else:
            number = latest_model_version(store, name)["version"] if uri["version"] == "latest" else uri["version"]
            version = client.get_model_version(name, str(number))
    except (MlflowException, LookupError) as err:
        reason = err.message if isinstance(err, MlflowException) else str(err)
        raise UserError(f"{flag} {value}: not in the model registry at {store} ({reason.splitlines()[0]})") from None
    # a registered version's files never change: copied once per machine, under $XDG_CACHE_HOME (else ~/.cache)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fomm" / "models"
    folder = cache / f"{name}-v{version.version}-{version.run_id}"
    staging = folder.with_name(f".{folder.name}-{os.getpid()}")
    try:  # whole or not at all: a second process may be copying it too
        if not folder.is_dir():
            unused_days = env_number("FOMM_MODEL_CACHE_DAYS", 30.0)
            folder.parent.mkdir(parents=True, exist_ok=True)
            download_model_version(store, name, int(version.version), staging).rename(folder)
            evict_unused(cache, unused_days, keep=folder)
        os.utime(folder)  # used now: what eviction goes by
    except (OSError, MlflowException) as err:
        if not folder.is_dir():  # MLflow's download error keeps no cause: the free space says what a full disk is
            source = ""
            with contextlib.suppress(MlflowException):  # the version's source is runs:/…
                source = client.get_run(version.run_id).info.artifact_uri
            free = f"; {shutil.disk_usage(cache).free / 2**20:,.0f} MiB free there" if cache.is_dir() else ""
            raise NotCopied(f"{flag} {value}: cannot copy version {version.version} into {cache} ({why(err)}{free}; "
                            "$XDG_CACHE_HOME moves it)", source) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    found = sorted(str(p) for p in folder.iterdir() if p.name.endswith(CHECKPOINT_SUFFIXES))
    if len(found) != 1:
        raise UserError(f"{flag} {value}: version {version.version} holds {len(found)} checkpoint files, not one")
    return found[0]


def evict_unused(cache: Path, days: float, keep: Path) -> None:
    """Remove the cached versions other than `keep` that no process has used for `days` days ($FOMM_MODEL_CACHE_DAYS,
    default 30), as `keep` is copied: a node animating with models:/NAME@champion copied each version the alias moved
    to, and kept them all until its disk was full."""
    cutoff = time.time() - days * 86400
    for old in cache.iterdir():
        with contextlib.suppress(OSError):  # gone already: another process evicted it
            if old != keep and not old.name.startswith(".") and old.stat().st_mtime < cutoff:  # not a copy under way
                shutil.rmtree(old)
