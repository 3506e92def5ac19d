"""The batch job (`animate.batch_checks`, then `start`): every (source, driving, output) row of a CSV
(local or s3://, paths relative to its folder), or of a dataset's clip pairs (the original's animate mode), on Ray
Data; an existing output is skipped, a failed pair goes to the error table (a full disk or missing S3 credentials
stop the job: every later pair would fail too)."""

from __future__ import annotations

import contextlib
import csv
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from animate.dataset_pairs import read_pair
from services import storage, user_csv
from services.atomic import remove_leftovers, scratch_dir
from services.cli import UserError, user_path
from services.failures import every_task_fails
from services.ray_start import (
    actor_device,
    check_device_room,
    check_room,
    connected,
    disconnect,
    ensure_ray,
    gpus_for,
    local_cpus,
)
from services.tracking import store_checks

if TYPE_CHECKING:  # torch comes with the model, after the flags and the CSV are checked
    from fomm.animator import Animator
    from preprocessing.shard_set import ShardSet

COLUMNS = ("source", "driving", "output")
FILE_KEYS = ("layout", "draw_kp", "output_size", "use_best_frame")  # animate_file's


def row_path(path: str, base: str | None) -> str:
    """A CSV cell as a path: from the CSV's folder unless absolute; ~ and file:// read as on the command line."""
    path = user_path(path)
    if base is None or storage.is_remote(path) or Path(path).is_absolute():
        return path
    return storage.join(base, path)


def csv_folder(pairs: str) -> str:
    """The folder of the pairs CSV, which its relative paths start from."""
    return str(pairs).rsplit("/", 1)[0] if storage.is_remote(pairs) else str(Path(pairs).resolve().parent)


def animate_rows(batch: dict[str, np.ndarray], animator: Animator, options: dict, base: str | None = None,
                 endpoint: str | None = None, clips: ShardSet | None = None) -> dict:
    """Animate each row of a batch (s3:// paths at `endpoint`; with `clips`, source and driving are its clip ids);
    rows come back with `status` (done|skipped|failed) and `error`."""
    from animate.files import animate_file, animate_frames

    results = []  # (status, error) per row
    for row in zip(*(batch[c] for c in COLUMNS)):
        source, driving, output = (str(p) if clips else row_path(str(p), base) for p in row)
        local = {}
        try:
            if storage.exists(output, endpoint):
                results.append(("skipped", ""))
                continue
            with contextlib.ExitStack() as stack:
                target = output  # a local one is written in place (temporary name, then rename)
                if storage.is_remote(output):
                    target = f"{stack.enter_context(scratch_dir('animate'))}/" \
                             f"{Path(output).name}"
                if clips is not None:
                    animate_frames(animator, *read_pair(clips, source, driving), target, **options)
                else:
                    local = {k: stack.enter_context(storage.local_copy(path, endpoint))
                             for k, path in (("source", source), ("driving", driving))}
                    animate_file(animator, local["source"], local["driving"], target, progress=False, **options)
                if storage.is_remote(output):  # one PUT: the object appears whole or not at all
                    storage.write_bytes(output, Path(target).read_bytes(), endpoint)
            results.append(("done", ""))
        except (ValueError, OSError, RuntimeError) as err:  # bad data: record it, keep going
            if every_task_fails(err):  # a full disk, no credentials: the job stops, the outputs made are kept
                raise
            message = str(err)
            for name, path in local.items():  # name the user's file, not its temporary download
                message = message.replace(str(path), {"source": source, "driving": driving}[name])
            results.append(("failed", message))
    return {**{c: np.asarray(batch[c]).astype(str) for c in COLUMNS},
            "status": np.array([r[0] for r in results]), "error": np.array([r[1] for r in results])}


class AnimatePairs:
    """Ray Data actor: one Animator per actor, built once, applied to every batch of rows."""

    def __init__(self, options: dict, num_threads: int = 1, base: str | None = None,
                 endpoint: str | None = None, clips: ShardSet | None = None) -> None:
        import torch

        from animate.files import build_animator

        torch.set_num_threads(num_threads)
        options = {**options, "device": actor_device(options.get("device", "cpu"))}
        if model := options.pop("registered", None):  # this machine's copy: another node has none of the driver's
            options["checkpoint"] = store_checks.registered_checkpoint("--checkpoint", model["uri"], model["store"])
            if model["config"]:
                options["config"] = store_checks.registered_config(None, options["checkpoint"], model["uri"])
        self.options = {k: v for k, v in options.items() if k in FILE_KEYS}  # the rest make the model
        self.animator, self.options["auto_crop"] = build_animator(**{k: v for k, v in options.items()
                                                                      if k not in FILE_KEYS})
        self.base, self.endpoint, self.clips = base, endpoint, clips

    def __call__(self, batch: dict[str, np.ndarray]) -> dict:
        return animate_rows(batch, self.animator, self.options, self.base, self.endpoint, self.clips)


def registered(uri: str, registered_config: bool) -> dict:
    """What an AnimatePairs actor needs to copy the registered model version `uri` (models:/…) on its own machine:
    the URI, the driver's tracking store, and whether the config is the one registered with it."""
    from services.tracking.store import default_tracking_uri

    return {"uri": uri, "store": default_tracking_uri(), "config": registered_config}


def error_table_path(pairs: str | None, errors: str | None) -> str:
    """The error table: `errors`, or next to the pairs CSV as *.errors.csv (`errors` is given without one)."""
    return errors or str(pairs).removesuffix(".csv") + ".errors.csv"


def read_pairs(pairs: str, endpoint: str | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """The pairs CSV's column names as written and its rows (user_csv.csv_table: as spreadsheets save it), each cell as
    written (Ray Data's read_csv typed a column of number-only names as numbers: `0001` was 1)."""
    try:
        return user_csv.csv_table(storage.read_bytes(pairs, endpoint))
    except (UnicodeDecodeError, ValueError):
        raise UserError(f"--pairs {pairs}: not a text CSV with source,driving,output columns") from None


def run(pairs: str | None, config: str, rows: list[dict[str, str]], *, errors: str | None = None,
        concurrency: int = 1, num_cpus: float = 1, endpoint: str | None = None, clips: ShardSet | None = None,
        **options) -> dict:
    """The rows (of --pairs, or of the dataset `clips` as check_dataset opened it) → map_batches(AnimatePairs;
    `options`: the model's and animate_file's) → error table; counts."""
    import ray

    base = csv_folder(pairs) if pairs else None
    errors = error_table_path(pairs, errors)
    ds = ray.data.from_items([{c: row[c].strip() for c in COLUMNS} for row in rows])
    results = ds.map_batches(
        # up to `concurrency` actors, as many as the cluster has room for: a fixed pool larger than the cluster
        # waited forever, and so did one that left no CPU for reading the CSV (when Ray Data read it)
        AnimatePairs, batch_size=1, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=concurrency),
        num_cpus=num_cpus,
        num_gpus=gpus_for(options.get("device", "cpu")),
        fn_constructor_kwargs={"options": {"config": config, **options}, "num_threads": max(1, int(num_cpus)),
                               "base": base, "endpoint": storage.s3_endpoint(endpoint), "clips": clips},
    ).take_all()
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[*COLUMNS, "error"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: r[k] for k in (*COLUMNS, "error")} for r in results if r["status"] == "failed")
    storage.write_bytes(errors, text.getvalue().encode(), endpoint)
    counts = {s: sum(r["status"] == s for r in results) for s in ("done", "skipped", "failed")}
    return {"pairs": len(results), **counts, "errors": errors}


def start(pairs: str, config: str, *, rows: list[dict[str, str]] | None = None, ray_address: str | None = None,
          **plan) -> dict:
    """After check_inputs (its `rows`, else the CSV is read): join (or start) Ray, check the actors fit it, run the
    plan; returns `run`'s counts. However it ends (Ctrl-C, an error), it leaves Ray, whose actors stop writing, and
    then no temporary beside an output."""
    rows = read_pairs(pairs, plan.get("endpoint"))[1] if rows is None else rows
    joined, outputs = not connected(), local_outputs(rows, csv_folder(pairs) if pairs else None)
    # a local Ray holds an actor of --num-cpus on any machine (as train's and evaluate's hold theirs): it was
    # refused after Ray's start-up lines
    ensure_ray(ray_address, num_cpus=local_cpus(plan.get("num_cpus", 1)))
    try:
        check_room("--num-cpus", "CPU", plan.get("num_cpus", 1))
        check_device_room(plan.get("device", "cpu"))
        return run(pairs, config, rows, **plan)
    finally:
        if joined:
            disconnect()  # a local Ray's actors end with it
        remove_leftovers(outputs, before=time.time())  # a lost node's or Ctrl-C's killed tries


def local_outputs(rows: list[dict[str, str]], base: str | None) -> list[str]:
    """The local output paths of the pairs CSV's rows (an s3:// output is one PUT: it leaves no temporary)."""
    return [out for row in rows if (out := row_path((row.get("output") or "").strip(), base))
            and not storage.is_remote(out)]
