"""Ray Data batch job: animate every (source, driving, output) row of a CSV, local or s3://, skipping done pairs.

python pipelines/animate.py --pairs pairs.csv --config configs/vox-256.yaml --checkpoint vox-cpk.pth.tar \
    [--crop auto|center|pad|none] [--subject N] [--no-paste-back] [--smooth S] \
    [--errors errors.csv] [--concurrency 2] [--num-cpus 1] [--ray-address auto]

The CSV has a header with at least `source,driving,output`; relative paths are relative to the CSV's folder.
A pair whose output exists is skipped; a pair that fails goes to the error table (CSV) and the job goes on.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.cli import ArgumentParser, UserError, at_least, run_cli  # noqa: E402

COLUMNS = ("source", "driving", "output")


def _absolute(path: str, base: str | None) -> str:
    from services import storage

    if base is None or storage.is_remote(path) or Path(path).is_absolute():
        return path
    return storage.join(base, path)


def animate_rows(batch: dict[str, np.ndarray], animator, options: dict, base: str | None = None) -> dict:  # noqa: ANN001
    """Animate each row of a batch; rows come back with `status` (done|skipped|failed) and `error`."""
    from fomm.cli import animate_file
    from services import storage

    status, errors = [], []
    for row in zip(*(batch[c] for c in COLUMNS)):
        source, driving, output = (_absolute(str(p), base) for p in row)
        local = {}
        try:
            if storage.exists(output):
                status.append("skipped")
                errors.append("")
                continue
            with storage.local_copy(source) as local["source"], storage.local_copy(driving) as local["driving"], \
                    tempfile.TemporaryDirectory(prefix="fomm-animate-") as tmp:
                target = f"{tmp}/{Path(output).name}" if storage.is_remote(output) else output
                animate_file(animator, local["source"], local["driving"], target, progress=False, **options)
                if storage.is_remote(output):  # one PUT: the object appears whole or not at all
                    storage.write_bytes(output, Path(target).read_bytes())
            status.append("done")
            errors.append("")
        except (ValueError, OSError, RuntimeError) as err:  # bad data: record it, keep going
            message = str(err)
            for name, path in local.items():  # name the user's file, not its temporary download
                message = message.replace(str(path), {"source": source, "driving": driving}[name])
            status.append("failed")
            errors.append(message)
    return {**{c: np.asarray(batch[c]).astype(str) for c in COLUMNS},
            "status": np.array(status), "error": np.array(errors)}


class AnimatePairs:
    """Ray Data actor: one Animator per actor, built once, applied to every batch of rows."""

    def __init__(self, config: str, checkpoint: str | None, random_init: bool, device: str, num_threads: int,
                 options: dict, base: str | None) -> None:
        import torch

        from animate.files import resolve_crop
        from fomm import Animator, load_config

        torch.set_num_threads(num_threads)
        options = dict(options)
        crop, auto_crop = resolve_crop(load_config(config), options.pop("crop", None),
                                       subject=options.pop("subject", None),
                                       paste_back=options.pop("paste_back", True), smooth=options.get("smooth", 0.0))
        animator_keys = ("relative", "adapt_movement_scale", "batch_size", "smooth", "precision")
        self.animator = Animator.from_config(config, checkpoint, random_init=random_init, device=device,
                                             crop="none" if auto_crop else crop,
                                             **{k: options[k] for k in animator_keys if k in options})
        self.options = {k: v for k, v in options.items() if k not in animator_keys}
        self.options["auto_crop"] = auto_crop
        self.base = base

    def __call__(self, batch: dict[str, np.ndarray]) -> dict:
        return animate_rows(batch, self.animator, self.options, self.base)


def write_error_table(path: str, rows: list[dict]) -> None:
    from services import storage

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[*COLUMNS, "error"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: r[k] for k in (*COLUMNS, "error")} for r in rows if r["status"] == "failed")
    storage.write_bytes(path, text.getvalue().encode())


def run(pairs: str, config: str, checkpoint: str | None = None, *, random_init: bool = False,
        errors: str | None = None, concurrency: int = 1, num_cpus: float = 1, device: str = "cpu",
        **options) -> dict:
    """The Ray Data plan: read_csv → map_batches(AnimatePairs) → error table. Returns counts per status."""
    import ray

    from services import storage

    if __name__ != "__main__":  # pipelines/ is not an installed package: ship this module to workers by value
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    fs, path = storage.resolve(pairs)
    base = str(pairs).rsplit("/", 1)[0] if storage.is_remote(pairs) else str(Path(pairs).resolve().parent)
    errors = errors or str(pairs).removesuffix(".csv") + ".errors.csv"
    ds = ray.data.read_csv(path, filesystem=fs).select_columns(list(COLUMNS))
    results = ds.map_batches(
        AnimatePairs, batch_size=1, concurrency=concurrency, num_cpus=num_cpus,
        num_gpus=1 if device.startswith("cuda") else 0,
        fn_constructor_kwargs={"config": config, "checkpoint": checkpoint, "random_init": random_init,
                               "device": device, "num_threads": max(1, int(num_cpus)), "options": options,
                               "base": base},
    ).take_all()
    write_error_table(errors, results)
    counts = {s: sum(r["status"] == s for r in results) for s in ("done", "skipped", "failed")}
    return {"pairs": len(results), **counts, "errors": errors}


def check_inputs(args) -> None:  # noqa: ANN001 - the parsed command line
    """Before Ray starts or anything is written: the pairs CSV and its columns, the model, the error table."""
    from fomm import Animator
    from services import checks, storage

    storage.check_reachable("--pairs", args.pairs)
    if not storage.is_remote(args.pairs):
        checks.existing_file("--pairs", args.pairs, "a CSV with source,driving,output columns")
    try:
        header = storage.read_bytes(args.pairs).decode("utf-8").splitlines()[0]
    except (UnicodeDecodeError, IndexError):
        raise UserError(f"--pairs {args.pairs}: not a text CSV with source,driving,output columns") from None
    missing = [c for c in COLUMNS if c not in next(csv.reader([header]))]
    if missing:
        raise UserError(f"--pairs {args.pairs}: no {missing[0]!r} column (expected a header with "
                        f"{','.join(COLUMNS)})")
    if args.checkpoint is not None:
        checks.existing_file("--checkpoint", args.checkpoint, "a checkpoint file")
    checks.existing_file("--config", args.config, "a FOMM YAML")
    Animator.from_config(args.config, args.checkpoint, random_init=args.random_init)  # the checkpoint fits
    errors = args.errors or str(args.pairs).removesuffix(".csv") + ".errors.csv"
    if not storage.is_remote(errors):
        checks.writable_dir("--errors", Path(errors).parent)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv, "animate")


def _main(argv: list[str]) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", required=True, help="CSV with source,driving,output columns (local or s3://)")
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint")
    parser.add_argument("--random-init", action="store_true", help="untrained model (tests and demos only)")
    parser.add_argument("--errors", help="error table CSV (default: next to --pairs, *.errors.csv)")
    parser.add_argument("--absolute", dest="relative", action="store_false", help="absolute motion transfer")
    parser.add_argument("--no-adapt-scale", dest="adapt_movement_scale", action="store_false")
    parser.add_argument("--layout", choices=("result", "side-by-side"), default="result")
    parser.add_argument("--batch-size", type=at_least(1), default=8)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: bf16 where the device computes it natively, else fp32")
    parser.add_argument("--crop", choices=("auto", "center", "pad", "none"),
                        help="auto (default for face/body configs where a detector runs): crop on the subject")
    parser.add_argument("--subject", type=at_least(0), help="with --crop auto: subject N from the left (default largest)")
    parser.add_argument("--paste-back", action=argparse.BooleanOptionalAction, default=True,
                        help="with --crop auto: result blended into the full source frame (default on)")
    parser.add_argument("--smooth", type=at_least(0.0, float), default=3.0,
                        help="one-euro smoothing, frames at rest (0 off)")
    parser.add_argument("--concurrency", type=at_least(1), default=1, help="animator actors")
    parser.add_argument("--num-cpus", type=at_least(0.01, float), default=1, help="CPUs per actor")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS or a local one)")
    args = parser.parse_args(argv)
    if args.checkpoint is None and not args.random_init:
        parser.error("--checkpoint is required (or --random-init)")
    check_inputs(args)
    from services.ray_start import ensure_ray

    ensure_ray(args.ray_address)
    summary = run(args.pairs, args.config, args.checkpoint, random_init=args.random_init, errors=args.errors,
                  concurrency=args.concurrency, num_cpus=args.num_cpus, device=args.device,
                  relative=args.relative, adapt_movement_scale=args.adapt_movement_scale, layout=args.layout,
                  batch_size=args.batch_size, crop=args.crop, subject=args.subject, paste_back=args.paste_back,
                  smooth=args.smooth, precision=args.precision)
    print(json.dumps(summary))
    print(f"error table: {summary['errors']}")
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
