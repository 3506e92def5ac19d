"""Evaluation reports: the metric table (text, HTML, PNG) with worst / best reconstructions, and run plots."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evaluation.metrics import SHORT_FORMULAS
from evaluation.visualize import matplotlib_module, side_by_side, strip, write_gif, write_png
from services import storage
from services.atomic import atomic_open, atomic_path

TITLES = {"l1": "L1", "akd": "AKD", "akd_l2": "AKD (L2)", "mkr": "MKR", "aed": "AED (sq. L2)", "aed_l2": "AED (L2)"}


def format_value(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "n/a"


def metric_rows(aggregate: dict[str, float], labels: dict[str, str]) -> list[tuple]:
    """(metric title with its backend, value, frames scored, formula) for every metric present."""
    rows = []
    for key, title in TITLES.items():
        if key in aggregate:
            label = labels.get(key, key)
            backend = f" · {label.split('/', 1)[1]}" if "/" in label else ""
            rows.append((f"{title}{backend}", format_value(aggregate[key]),
                         str(int(aggregate.get(f"{key}_frames", 0))), SHORT_FORMULAS.get(key, "")))
    return rows


def text_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Fixed-width lines of a header row, a rule of dashes and the other rows."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return [lines[0], "  ".join("-" * w for w in widths), *lines[1:]]


def metric_table_text(aggregate: dict[str, float], labels: dict[str, str], networks: dict[str, str]) -> str:
    """The data-set figures, each labelled with the backend that produced it, then each backend's network."""
    lines = text_table([("metric", "value", "frames", "formula"), *metric_rows(aggregate, labels)])
    return "\n".join(lines + [f"{name}: {network}" for name, network in networks.items()])


def _pyplot():  # noqa: ANN202 - the matplotlib.pyplot module, on the file-only Agg backend
    matplotlib_module().use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _summary_png(path: Path, aggregate: dict, labels: dict, cases: Sequence[dict], n_frames: int) -> Path:
    rows = [r[:3] for r in metric_rows(aggregate, labels)]  # without the formula
    fig = _pyplot().figure(figsize=(10, 1.2 + 0.35 * len(rows) + 2.2 * len(cases)))
    grid = fig.add_gridspec(1 + len(cases), 1, height_ratios=[0.6 + 0.3 * len(rows)] + [2] * len(cases))
    ax = fig.add_subplot(grid[0])
    ax.axis("off")
    if rows:
        ax.table(cellText=rows, colLabels=["metric", "value", "frames"], loc="center", cellLoc="left")
    ax.set_title(f"{int(aggregate.get('num_videos', 0))} videos, {int(aggregate.get('num_frames', 0))} frames")
    for i, case in enumerate(cases, start=1):
        ax = fig.add_subplot(grid[i])
        ax.imshow(np.concatenate([strip(case["real"], n_frames), strip(case["prediction"], n_frames)], axis=0))
        ax.set_title(f"{case['title']}: {case['clip_id']} (L1 {format_value(case['l1'])}); top real, bottom generated",
                     fontsize=9)
        ax.axis("off")
    return save_figure(fig, path)


def write_report(out_dir: str | Path, aggregate: dict[str, float], labels: dict[str, str],
                 cases: Sequence[dict], meta: dict[str, str], n_frames: int = 6) -> dict[str, Path]:
    """report/: index.html, summary.png and a real | generated | |diff| GIF per case (title, clip_id, l1, real,
    prediction)."""
    root = Path(out_dir) / "report"  # each file's writer makes the folder
    parts = ["<!doctype html><meta charset='utf-8'><title>FOMM evaluation</title>",
             "<style>body{font-family:sans-serif}td,th{padding:2px 10px;text-align:left}"
             "img{image-rendering:pixelated}</style><h1>FOMM video reconstruction</h1>", "<table>"]
    parts += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in meta.items()]
    parts.append("</table><h2>Metrics</h2><table border=1><tr><th>metric</th><th>value</th><th>frames</th>"
                 "<th>formula</th></tr>")
    parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
              for row in metric_rows(aggregate, labels)]
    parts.append("</table><h2>Worst and best reconstructions</h2><p>real | generated | |difference| ×4</p>")
    for case in cases:
        safe = storage.safe_name(f"{case['title'].replace(' ', '_')}_{case['clip_id']}.gif")
        both = side_by_side(case["real"], case["prediction"])
        write_gif(both, root / safe, scale=max(1, 192 // case["real"].shape[1]))
        write_png(both[0], root / safe.replace(".gif", "_f0.png"))
        parts.append(f"<h3>{html.escape(case['title'])}: {html.escape(case['clip_id'])} "
                     f"(L1 {format_value(case['l1'])})</h3><img src='{html.escape(safe)}'>")
    summary = _summary_png(root / "summary.png", aggregate, labels, cases, n_frames)
    parts.append("<h2>Summary</h2><img src='summary.png'>")
    index = root / "index.html"
    with atomic_open(index, "w") as f:
        f.write("\n".join(parts))
    return {"dir": root, "html": index, "png": summary}


def plot_runs(runs: Sequence[dict], metrics: Sequence[str], path: str | Path) -> Path:
    """One bar chart per metric across runs (runs: dicts with run_name/run_id and metrics), as PNG."""
    names = [r.get("run_name") or r["run_id"][:8] for r in runs]
    fig, axes = _pyplot().subplots(len(metrics), 1, figsize=(max(4, 0.6 * len(runs) + 2), 2.2 * len(metrics)),
                                   squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics):
        values = [r["metrics"].get(metric, float("nan")) for r in runs]
        ax.bar(range(len(runs)), values, color="tab:blue")
        ax.set_xticks(range(len(runs)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
    return save_figure(fig, path)


def plot_curves(curves: dict[str, Sequence[tuple[int, float]]], path: str | Path, title: str = "") -> Path:
    """Line plots of (step, value) series, one panel each (e.g. training losses and val_l1), as PNG."""
    names = [n for n, c in curves.items() if c]
    fig, axes = _pyplot().subplots(len(names), 1, figsize=(6, 1.9 * max(1, len(names))), squeeze=False,
                                   sharex=True)
    for ax, name in zip(axes[:, 0], names):
        steps, values = zip(*curves[name])
        ax.plot(steps, values, color="tab:blue", lw=1)
        ax.set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel("step")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:  # noqa: ANN001 - a matplotlib Figure
    """Tight layout, write to a temporary PNG beside `path`, rename, close the figure."""
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        _pyplot().close(fig)
    return Path(path)
