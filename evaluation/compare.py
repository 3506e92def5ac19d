"""`fomm runs compare`: a table (and a bar-chart PNG) of metrics across the MLflow runs of an experiment."""

from __future__ import annotations

import argparse
import csv
import difflib
import io
import json
import math
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from services import checks
from services.cli import at_least, experiment_flag
from services.errors import UserError
from services.stage import Stage, Summary
from services.tracking import store_checks

MAIN_METRIC = re.compile(r"^(l1|akd|akd_l2|mkr|aed|aed_l2)(/.*)?$")


def default_metrics(runs: list[dict]) -> list[str]:
    """The reconstruction metrics any of the runs has (backend-labelled keys kept apart), L1 first."""
    keys = {k for r in runs for k in r["metrics"] if MAIN_METRIC.match(k) and not k.endswith("_frames")}
    return sorted(keys, key=lambda k: (k != "l1", k))


def metric_keys(flag: str, names: list[str], have: list[str], experiment: str) -> list[str]:
    """Each name as the runs' key, or its backend-labelled keys (akd → akd/dlib-68, …); a name no run has is a
    typo, not an empty column: a UserError naming the flag."""
    keys = []
    for name in names:
        labelled = [k for k in have if k.startswith(f"{name}/") and not k.endswith("_frames")]
        if not (found := [name] if name in have else labelled):
            near = difflib.get_close_matches(name.lower(), have, 1)
            raise UserError(f"{flag} {name}: no run of --experiment {experiment} has that metric (" +
                            (f"did you mean {near[0]}?)" if near else f"they have: {', '.join(have)})"))
        keys += found
    return keys


def shown_value(v: float | None, exact: bool) -> str | float | None:
    """A metric as a table shows it (4 decimals; 4 significant digits where those would show 0 or overflow; '' where
    absent), or `exact` for CSV / JSON (the float itself; None where absent); 'nan' or 'inf' where not finite."""
    if v is None:
        return None if exact else ""
    if not math.isfinite(v):
        return str(v)
    if exact:
        return v
    return f"{v:.4f}" if v == 0 or 1e-3 <= abs(v) < 1e6 else f"{v:.4g}"  # 2e-05 was 0.0000


def runs_table(runs: list[dict], metrics: list[str], exact: bool = False) -> tuple[list[str], list[list]]:
    """(header, rows) of run name, id, status, start time, checkpoint and the metrics (shown_value); then why a run
    did not finish, where one did not."""
    from services.tracking.run import END_REASON

    header = ["run_name", "run_id", "status", "start_time", "checkpoint_sha256", *metrics]
    reasons = [r["tags"].get(END_REASON, "") if r["status"] != "FINISHED" else "" for r in runs]
    rows = []
    for r in runs:
        start = datetime.fromtimestamp(r["start_time"] / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") \
            if r.get("start_time") else ""
        sha = r["params"].get("checkpoint.sha256", r["tags"].get("checkpoint.sha256", ""))[:12]
        values = [shown_value(r["metrics"].get(m), exact) for m in metrics]
        rows.append([r.get("run_name") or "", r["run_id"], r["status"], start, sha, *values])
    if any(reasons):
        header.append("end_reason")
        rows = [[*row, why] for row, why in zip(rows, reasons)]
    return header, rows


def add_flags(p: argparse.ArgumentParser) -> None:
    experiment_flag(p, "fomm-eval", "--experiment", "-e")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI "
                   "or the local ./mlruns SQLite store)")
    p.add_argument("--metrics", default=None, help="comma-separated metric keys (default: all L1/AKD/MKR/AED)")
    p.add_argument("--filter", default="", help="MLflow search filter, e.g. \"tags.`fomm.kind` = 'benchmark'\"")
    p.add_argument("--sort", default=None, help="sort ascending by this metric (default: newest first)")
    p.add_argument("--limit", type=at_least(1), default=50, help="at most this many runs (default 50)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table", help="how the runs are printed")
    p.add_argument("--plot", default=None, help="also write a bar chart per metric to this PNG path")


def check(args: argparse.Namespace) -> None:
    """A tracking URI that answers; a --plot that can be written and is not the tracking store."""
    store_checks.tracking_uri("--tracking-uri", args.tracking_uri, write=False)
    from services.tracking.queries import check_filter
    from services.tracking.store import default_tracking_uri, local_sqlite_path  # MLflow (seconds)

    check_filter("--filter", args.filter)
    uri = args.tracking_uri or default_tracking_uri()
    if (db := local_sqlite_path(uri)) is not None and (not db.is_file() or not db.stat().st_size):  # reading makes none
        raise UserError(f"--tracking-uri {uri}{'' if args.tracking_uri else ' (the default)'}: no MLflow store there "
                        "(nothing to compare: train, tune or evaluate first, or name the store)")
    if args.plot:
        plot = Path(args.plot)
        if plot.is_dir():
            raise UserError(f"--plot {args.plot}: is a folder (expected a .png file)")
        if plot.suffix.lower() != ".png":
            raise UserError(f"--plot {args.plot}: expected a .png file")
        checks.new_file("--plot", args.plot)
        checks.not_an_input("--plot", args.plot, {"--tracking-uri": db})
        checks.writable_file("--plot", args.plot)


def run(args: argparse.Namespace, _: argparse.Namespace) -> Summary:
    # matplotlib and MLflow take seconds to import: after the checks
    from evaluation.report import plot_runs, text_table
    from services.tracking.queries import experiment_names, search_runs

    runs = search_runs(args.tracking_uri, args.experiment, filter_string=args.filter)
    if not runs and args.experiment not in (names := experiment_names(args.tracking_uri)):
        near = difflib.get_close_matches(args.experiment, names, 1)  # a typo, as --metrics answers one
        raise UserError(f"--experiment {args.experiment}: no experiment of that name (" +
                        (f"did you mean {near[0]}?)" if near else f"the store has: {', '.join(names[:10]) or 'none'}"
                         + (f", … {len(names)} in all)" if len(names) > 10 else ")")))
    if not runs:
        raise UserError(f"--experiment {args.experiment}: no runs" +
                        (f" matching --filter {args.filter!r}" if args.filter else ""))
    have = sorted({k for r in runs for k in r["metrics"]})
    names = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    metrics = metric_keys("--metrics", names, have, args.experiment) if names else default_metrics(runs)
    if args.sort:
        if len(keys := metric_keys("--sort", [args.sort], have, args.experiment)) > 1:
            raise UserError(f"--sort {args.sort}: names {len(keys)} metrics ({', '.join(keys)}): choose one")
        runs.sort(key=lambda r: (r["metrics"].get(keys[0]) is None, r["metrics"].get(keys[0], 0.0)))
    runs = runs[:args.limit]
    header, rows = runs_table(runs, metrics, exact=args.format != "table")  # machine formats: every digit
    if args.format == "json":
        text = json.dumps([dict(zip(header, row)) for row in rows], indent=1)
    elif args.format == "csv":
        buf = io.StringIO()
        csv.writer(buf).writerows([header, *rows])
        text = buf.getvalue().rstrip("\n")
    else:
        text = "\n".join(text_table([header, *rows]))
    if args.plot and not metrics:  # a chart of no panel: a ValueError traceback from matplotlib
        raise UserError(f"--plot {args.plot}: the {len(runs)} run(s) matched hold no metrics to plot")
    if args.plot:
        print(f"plot: {plot_runs(runs, metrics, args.plot)}", file=sys.stderr)
    return Summary(notes=[text])


STAGE = Stage("fomm runs compare", __doc__, add_flags, lambda args: args, check, run)
main, parse_args = STAGE.main, STAGE.parse_args


if __name__ == "__main__":
    sys.exit(main())
