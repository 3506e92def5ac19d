"""The batch job (`check_inputs` or `check_dataset`, then `start`): every (source, driving, output) row of a CSV
(local or s3://, paths relative to its folder), or of a dataset's clip pairs (the original's animate mode), on Ray
Data; an existing output is skipped, a failed pair goes to the error table (a full disk or missing S3 credentials
stop the job: every later pair would fail too)."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from animate.dataset_pairs import dataset_rows, read_pair
from animate.options import check_model_files
from evaluation.visualize import check_colormap
from services import checks, storage
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
from services.video_write import OUTPUT_SUFFIXES

if TYPE_CHECKING:  # torch comes with the model, after the flags and the CSV are checked
    from fomm.animator import Animator
    from preprocessing.shard_set import ShardSet

COLUMNS = ("source", "driving", "output")
FILE_KEYS = ("layout", "draw_kp", "output_size", "use_best_frame")  # animate_file's


def _absolute(path: str, base: str | None) -> str:
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
        source, driving, output = (str(p) if clips else _absolute(str(p), base) for p in row)
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


def is_error_table(path: str) -> bool:
    """Whether a local file starts with the header `run` gives an error table (a rerun writes it anew)."""
    with contextlib.suppress(OSError, UnicodeDecodeError), open(path, encoding="utf-8", newline="") as f:
        return f.readline().rstrip("\r\n") == ",".join((*COLUMNS, "error"))
    return False


def read_pairs(pairs: str, endpoint: str | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """The pairs CSV's column names as written and its rows (checks.csv_table: as spreadsheets save it), each cell as
    written (Ray Data's read_csv typed a column of number-only names as numbers: `0001` was 1)."""
    try:
        return checks.csv_table(storage.read_bytes(pairs, endpoint))
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


def check_inputs(pairs: str, config: str, checkpoint: str | None, random_init: bool, errors: str | None,
                 endpoint: str | None = None) -> list[dict[str, str]]:
    """Before Ray starts or anything is written: the pairs CSV and its columns, the model, the error table; the CSV's
    rows, read once (the job animates what was checked)."""
    checks.existing_file("--pairs", pairs, "a CSV with source,driving,output columns", endpoint)
    names, rows = read_pairs(pairs, endpoint)
    if missing := [c for c in COLUMNS if c not in map(checks.csv_key, names)]:  # shown as written: 'src' shows
        raise UserError(f"--pairs {pairs}: no {missing[0]!r} column (expected a header with {','.join(COLUMNS)}; "
                        f"it has {names})")
    if not rows:  # a job that would make nothing
        raise UserError(f"--pairs {pairs}: no rows below the header (nothing to animate)")
    base = csv_folder(pairs)
    outputs: dict[str, int] = {}  # output → its line: two pairs into one file would leave one "skipped"
    files: dict[str, str] = {}  # each row's files, which the error table must not overwrite
    folders: set[str] = set()  # the output folders checked writable (once each)
    for line, row in enumerate(rows, start=2):  # no output overwrites an input
        if (width := checks.ragged_row(row)) is not None:
            raise UserError(f"--pairs {pairs} line {line}: not the header's {width} fields (a comma inside a path "
                            "needs quotes)")
        if empty := [c for c in COLUMNS if not (row.get(c) or "").strip()]:  # Ray Data would read it as 'nan'
            raise UserError(f"--pairs {pairs} line {line}: no {empty[0]} (every row names a source, a driving video "
                            "and an output)")
        src, drv, out = (_absolute(row[c].strip(), base) for c in COLUMNS)
        key = out if storage.is_remote(out) else os.path.normpath(out)
        if (first := outputs.setdefault(key, line)) != line:
            raise UserError(f"--pairs {pairs} line {line}: output {out} is line {first}'s output too "
                            f"(each pair needs a file of its own)")
        flag = f"--pairs {pairs} line {line}: output"
        checks.not_an_input(flag, out, {"source": src or None, "driving": drv or None, "--pairs": pairs,
                                        "--config": config, "--checkpoint": checkpoint})
        if Path(out).suffix.lower() not in OUTPUT_SUFFIXES:  # found by each actor, with Ray running: exit 1
            raise UserError(f"{flag} {out}: not a video file name (use {', '.join(OUTPUT_SUFFIXES)})")
        if not storage.is_remote(out):
            if Path(out).is_dir():  # it was "skipped": nothing made, and exit 0
                raise UserError(f"{flag} {out}: is a folder (expected the video file to write)")
            if (folder := os.path.dirname(out)) not in folders:  # a read-only one failed inside Ray Data
                folders.add(folder)
                checks.writable_file(flag, out)
        files.update({f"line {line}'s {c}": path for c, path in zip(COLUMNS, (src, drv, out))})
    check_model_files(config, checkpoint)
    check_model(config, checkpoint, random_init, error_table_path(pairs, errors), {"--pairs": pairs, **files},
                endpoint)
    return rows


def check_dataset(data: str, split: str, out: str, num_pairs: int | None, pairs_list: str | None, config: str,
                  checkpoint: str | None, random_init: bool, errors: str | None, endpoint: str | None = None
                  ) -> tuple[list[dict[str, str]], str, ShardSet]:
    """The animate mode's checks, before Ray starts or anything is written: the dataset's split, --out, the pairs
    (--pairs-list, else the config's dataset_params.pairs_list where that file is, else --num-pairs or the config's
    animate_params.num_pairs drawn at random), the model, the error table (default --out/errors.csv); the rows, the
    table and the dataset, opened once (the job's actors read its clips)."""
    from fomm.config.schema import load_config
    from preprocessing.shard_set import require_shards

    check_model_files(config, checkpoint)
    cfg = load_config(config)
    suffix = cfg.animate_params.format.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise UserError(f"--config {config}: animate_params.format {cfg.animate_params.format!r} is not one of "
                        f"{', '.join(OUTPUT_SUFFIXES)}")
    clips = require_shards("--data", data, split, endpoint)
    checks.writable_storage("--out", out, endpoint)
    checks.not_an_input("--out", out, {"--data": data, "--config": config, "--checkpoint": checkpoint,
                                       "--pairs-list": pairs_list}, folder=True)
    listed = cfg.dataset_params.pairs_list
    if pairs_list is None and listed and storage.exists(listed, endpoint):
        pairs_list = listed
    elif pairs_list is None and listed:
        print(f"note: the config's dataset_params.pairs_list {listed}: no such file here: random pairs instead "
              "(give one with --pairs-list)", flush=True)
    if pairs_list is not None:
        checks.existing_file("--pairs-list", pairs_list, "a CSV with source,driving columns", endpoint)
    rows = dataset_rows(clips, data, split, out, suffix, num_pairs or cfg.animate_params.num_pairs, pairs_list,
                        endpoint)
    table = errors or storage.join(out, "errors.csv")
    check_model(config, checkpoint, random_init, table, {"--data": data, "--pairs-list": pairs_list}, endpoint)
    return rows, table, clips


def check_model(config: str, checkpoint: str | None, random_init: bool, table: str, inputs: dict[str, str | None],
                endpoint: str | None) -> None:
    """The error table (not an input, writable), then the model itself (it fits); its files were checked first."""
    checks.not_an_input("--errors", table, {**inputs, "--config": config, "--checkpoint": checkpoint})
    if storage.is_remote(table):
        checks.storage_reachable("--errors", table, endpoint)
    else:
        if Path(table).is_dir():
            raise UserError(f"--errors {table}: is a folder (expected a CSV file)")
        if Path(table).exists() and not is_error_table(table):  # a user's file: it was replaced, and exit 0
            raise UserError(f"--errors {table}: exists and is no error table of this job (a file is never "
                            "overwritten: remove it or choose a new name)")
        checks.writable_file("--errors", table)
    from fomm.animator import Animator  # torch: only once the cheap checks pass

    check_colormap(config, Animator.from_config(config, checkpoint, random_init=random_init).visualizer)  # it fits


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
    return [out for row in rows if (out := _absolute((row.get("output") or "").strip(), base))
            and not storage.is_remote(out)]
