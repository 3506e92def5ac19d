"""Which Ray cluster a stage runs on (--ray-address, $RAY_ADDRESS, else a local one), and whether it can: the cluster
answers and lets this driver in, or a local Ray has room for its session."""

from __future__ import annotations

import argparse
import os
import sys


def add_ray_address_flag(parser: argparse.ArgumentParser) -> None:
    """`--ray-address`: the one flag naming the Ray cluster, on every stage that uses Ray (dest `ray_address`)."""
    parser.add_argument("--ray-address", default=None, metavar="ADDRESS",
                        help="Ray cluster to run on (default: $RAY_ADDRESS, else a local Ray)")


def cluster_address(address: str | None = None) -> str | None:
    """The Ray cluster to join: `address` (--ray-address), else $RAY_ADDRESS; None means a local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_address(address: str | None = None, flag: str = "--ray-address") -> None:
    """The Ray cluster to join answers on its port, else a UserError naming the flag (or $RAY_ADDRESS): ray.init
    would wait minutes on a dead address. None: a local Ray, with room for its session; "auto" and "local" are
    Ray's to resolve."""

    from services.errors import UserError

    where = flag if address else "$RAY_ADDRESS"
    if (address := cluster_address(address)) is None:
        return room_for_a_local_ray()
    if address == "local":  # Ray's word for a new local one
        return room_for_a_local_ray()
    if address == "auto":  # the Ray that `ray start` ran on this machine: ray.init's traceback when there is none
        from ray._private.services import canonicalize_bootstrap_address

        try:
            address = canonicalize_bootstrap_address("auto")
        except ConnectionError as err:  # none, or several
            raise UserError(f"{where} auto: {str(err).split('. ')[0].rstrip('.')} on this machine (start one with "
                            "`ray start --head`, or give its HOST:PORT)") from None
    if address.startswith(("http://", "https://")):  # the dashboard's: what `ray job submit --address` takes
        raise UserError(f"{where} {address}: a dashboard URL is for `ray job submit`; a driver joins the cluster "
                        "at HOST:6379 (its GCS)")
    if address.startswith("ray://"):  # Ray Data runs no dataset in a Ray Client driver (ray-project/ray#42739)
        raise UserError(f"{where} {address}: a Ray Client address; Ray Data, which every stage uses, does not run "
                        "over Ray Client: submit the stage with `ray job submit --address http://HOST:8265 -- python "
                        "pipelines/…`, or join at HOST:6379 from a machine of the cluster's network")
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise UserError(f"{where} {address}: expected HOST:PORT or auto")
    try:
        silent = not _answers_http2(host, int(port))
    except (OSError, OverflowError) as err:  # OverflowError: a port above 65535
        raise UserError(f"{where} {address}: no Ray cluster answers there ({getattr(err, 'strerror', None) or err})"
                        ) from None
    if silent:  # ray.init waited minutes, a warning every 5 s
        raise UserError(f"{where} {address}: no Ray cluster answers there (the port takes connections, but nothing "
                        f"answered within {ANSWER_S:g} s: another service's port?)")
    if not _lets_this_driver_in(address):
        raise UserError(f"{where} {address}: the Ray cluster refused this driver's authentication token (set "
                        "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN, or ~/.ray/auth_token, to the cluster's token)")


ANSWER_S = 5.0  # a Ray GCS (a gRPC server) answers a new connection at once


def _answers_http2(host: str, port: int) -> bool:
    """Whether the server at host:port answers an HTTP/2 client's first bytes within ANSWER_S (a gRPC server sends
    its settings; any other answer, or a close, counts too: only silence is no Ray GCS)."""
    import socket

    with socket.create_connection((host, port), timeout=ANSWER_S) as conn:
        conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # preface, SETTINGS
        try:
            conn.recv(9)
        except TimeoutError:
            return False
    return True


def cluster_started_here() -> str | None:
    """The address of the Ray that `ray start` last started on this machine (its address file), if it answers."""
    from ray._private.services import find_bootstrap_address

    host, _, port = (find_bootstrap_address(None) or "").rpartition(":")
    try:
        return f"{host}:{port}" if host and port.isdigit() and _answers_http2(host, int(port)) else None
    except OSError:  # the file outlived its cluster
        return None


def _lets_this_driver_in(address: str, wait: float = 5.0) -> bool:
    """Whether the cluster's GCS takes this process's token (none, without RAY_AUTH_MODE=token): ray.init retried a
    refusal for 30 s, a warning a second, then a traceback. No answer within `wait` (a port that is no Ray GCS:
    Ray's client waits 40 s) or another error is ray.init's to report."""
    import threading

    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    refused = []

    def ask() -> None:
        try:
            GcsClient(address=address)
        except AuthenticationError:
            refused.append(address)
        except Exception:  # anything else: ray.init tries again and reports it
            pass

    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)  # Ray's C++ client logs the refusal there too
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        asker.join(wait)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return not refused


def room_for_a_local_ray() -> None:
    """A local Ray keeps its session (sockets, logs, spilled objects) in Ray's temporary folder (RAY_TMPDIR, else
    TMPDIR, else /tmp): on a full disk its start waited for a file never written, then failed with a traceback; it
    must be this user's to write."""
    import shutil

    from ray._common.utils import get_default_ray_temp_dir, get_default_system_temp_dir  # Ray's own rules

    from services.checks import MIN_FREE_BYTES, writable_dir
    from services.errors import UserError

    root = get_default_system_temp_dir()
    free = shutil.disk_usage(root).free if os.path.isdir(root) else MIN_FREE_BYTES
    if free < MIN_FREE_BYTES:
        raise UserError(f"{root}: no space left on the device for a local Ray's session ({free // 1024} KiB free; "
                        "free some, or set RAY_TMPDIR to a folder with room)")
    try:  # another user's, or a read-only one: ray.init failed after the stage had made its output folder
        writable_dir("a local Ray's session folder", get_default_ray_temp_dir())
    except UserError as err:
        raise UserError(f"{err} (set RAY_TMPDIR to a folder this user can write)") from None
