"""The batch job's checks, before Ray starts or anything is written (`check_inputs`: a pairs CSV; `check_dataset`:
the original's animate mode over a dataset's clips); each returns what the job then animates, read once."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from animate.batch import COLUMNS, csv_folder, error_table_path, read_pairs, row_path
from animate.dataset_pairs import dataset_rows
from animate.options import check_model_files
from evaluation.visualize import check_colormap
from services import checks, storage, user_csv
from services.cli import UserError
from services.video_write import OUTPUT_SUFFIXES

if TYPE_CHECKING:
    from preprocessing.shard_set import ShardSet


def is_error_table(path: str) -> bool:
    """Whether a local file starts with the header `run` gives an error table (a rerun writes it anew)."""
    with contextlib.suppress(OSError, UnicodeDecodeError), open(path, encoding="utf-8", newline="") as f:
        return f.readline().rstrip("\r\n") == ",".join((*COLUMNS, "error"))
    return False


def _place(path: str) -> str:
    """One spelling of a row's path: a local one absolute with symlinks followed, a URL as written."""
    return path if storage.is_remote(path) else os.path.realpath(path)


def _no_unfinished_output(flag: str, out: str) -> None:
    """An existing output is taken as made and skipped: it must be a video file, not a folder, a pipe or empty."""
    checks.no_dangling_output(flag, out)
    if Path(out).is_dir():  # it was "skipped": nothing made, and exit 0
        raise UserError(f"{flag} {out}: is a folder (expected the video file to write)")
    checks.file_or_folder(flag, out, "the video file to write")
    if Path(out).is_file() and Path(out).stat().st_size == 0:
        raise UserError(f"{flag} {out}: exists but is empty (0 bytes), so it would be skipped as made: remove it")


def check_inputs(pairs: str, config: str, checkpoint: str | None, random_init: bool, errors: str | None,
                 endpoint: str | None = None) -> list[dict[str, str]]:
    """Before Ray starts or anything is written: the pairs CSV and its columns, the model, the error table; the CSV's
    rows, read once (the job animates what was checked)."""
    checks.existing_file("--pairs", pairs, "a CSV with source,driving,output columns", endpoint)
    names, rows = read_pairs(pairs, endpoint)
    if missing := [c for c in COLUMNS if c not in map(user_csv.csv_key, names)]:  # shown as written: 'src' shows
        raise UserError(f"--pairs {pairs}: no {missing[0]!r} column (expected a header with {','.join(COLUMNS)}; "
                        f"it has {names})")
    if not rows:  # a job that would make nothing
        raise UserError(f"--pairs {pairs}: no rows below the header (nothing to animate)")
    base = csv_folder(pairs)
    # each path in one spelling (_place): output → its line and path (two pairs into one file would leave one
    # "skipped"), source or driving → its line and column
    outputs: dict[str, tuple[int, str]] = {}
    inputs: dict[str, str] = {}
    files: dict[str, str] = {}  # each row's files, which the error table must not overwrite
    folders: set[str] = set()  # the output folders checked writable (once each)
    for line, row in enumerate(rows, start=2):
        at = f"--pairs {pairs} line {line}"
        if (width := user_csv.ragged_row(row)) is not None:
            raise UserError(f"{at}: not the header's {width} fields (a comma inside a path needs quotes)")
        if empty := [c for c in COLUMNS if not (row.get(c) or "").strip()]:  # Ray Data would read it as 'nan'
            raise UserError(f"{at}: no {empty[0]} (every row names a source, a driving video and an output)")
        for c in COLUMNS:  # 's3:/b/x' would be a local folder 's3:'
            if problem := storage.url_problem(row[c].strip()):
                raise UserError(f"{at}: {c} {row[c].strip()}: {problem}")
        src, drv, out = (row_path(row[c].strip(), base) for c in COLUMNS)
        if (first := outputs.setdefault(_place(out), (line, out))[0]) != line:  # however spelt: ./x, a symlink
            raise UserError(f"{at}: output {out} is line {first}'s output too (each pair needs a file of its own)")
        flag = f"{at}: output"
        checks.not_an_input(flag, out, {"source": src or None, "driving": drv or None, "--pairs": pairs,
                                        "--config": config, "--checkpoint": checkpoint})
        if Path(out).suffix.lower() not in OUTPUT_SUFFIXES:  # found by each actor, with Ray running: exit 1
            raise UserError(f"{flag} {out}: not a video file name (use {', '.join(OUTPUT_SUFFIXES)})")
        if not storage.is_remote(out):
            _no_unfinished_output(flag, out)
            checks.name_fits(flag, out)
            if (folder := os.path.dirname(out)) not in folders:  # a read-only one failed inside Ray Data
                folders.add(folder)
                checks.writable_file(flag, out)
        files.update({f"line {line}'s {c}": path for c, path in zip(COLUMNS, (src, drv, out))})
        inputs.update({_place(path): f"line {line}'s {c}" for c, path in (("source", src), ("driving", drv))})
    for place, (line, out) in outputs.items():  # a pair would write over another's input, or skip it as made
        if used := inputs.get(place):
            raise UserError(f"--pairs {pairs} line {line}'s output: {out} is {used} (an output must not overwrite an "
                            "input)")
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


