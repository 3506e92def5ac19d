"""The scheduled benchmark: evaluate the newest checkpoint and fail on a (lower-is-better) metric worse than the best
comparable earlier run's by more than the threshold, a metric without a value, or too many failed clips."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evaluation.runner import EvalConfig
from services.atomic import scratch_dir
from services.errors import UserError
from services.fields import check_fields, rule

if TYPE_CHECKING:  # MLflow and torch (seconds): imported where a benchmark runs, not where its flags are checked
    from evaluation.ray_jobs import EvalResult

# only runs equal in these compete: figures of other data or other backends are never compared
MATCH_PARAMS = ("eval.data", "eval.split", "eval.max_videos", "eval.config_path", "akd.backend", "aed.backend")


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
    """What to evaluate (a checkpoint file or folder, or a registered model) and how to judge it: which metrics
    are compared and how much worse, or how many failed clips, fail a run (evaluate's failed-clip rule is this one's
    max_error_fraction)."""

    eval: EvalConfig  # its checkpoint is replaced by the resolved newest one
    checkpoints: str | None = None  # a checkpoint file, or a folder searched for the newest one
    model_name: str | None = None  # or: the newest version of this MLflow registered model
    promote: str | None = field(default=None, metadata=rule(
        "with --model-name: point this alias (e.g. champion) at the evaluated version when it has no regression"))
    metrics: tuple[str, ...] = field(default=("l1", "akd", "mkr", "aed"), metadata=rule(
        "metrics compared (lower is better), comma-separated"))  # plain names; compared under their logged labels
    primary: str = field(default="l1", metadata=rule("the metric that picks the best earlier run"))
    threshold: float = field(default=0.05, metadata=rule("relative regression threshold", ge=0))
    abs_tolerance: float = field(default=1e-6, metadata=rule("absolute regression tolerance", ge=0))
    max_error_fraction: float = field(default=0.0, metadata=rule(
        "share of clips that may fail (error rows) before the run fails with exit 1", ge=0, le=1))

    def __post_init__(self) -> None:
        check_fields(self)  # the declared rules: numbers in range
        if (self.checkpoints is None) == (self.model_name is None):
            raise UserError("give exactly one of --checkpoints or --model-name")
        if self.promote is not None and self.model_name is None:
            raise UserError(f"--promote {self.promote}: needs --model-name (the registered model whose alias moves)")


@dataclass
class BenchmarkResult:
    result: EvalResult
    checkpoint: str
    baseline: dict | None  # the best earlier run (plain dict) or None for the first run
    regressions: list[str] = field(default_factory=list)
    compared: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric → (current, best)
    promoted: str | None = None  # 'models:/NAME@ALIAS is version N' (--promote, no regression)


def newest_checkpoint(path: str, endpoint: str | None = None) -> str:
    """`path` itself when it is a file; else the most recently modified checkpoint file under it."""
    from services import storage
    from services.tracking.registry import CHECKPOINT_SUFFIXES

    if not storage.is_dir(path, endpoint):
        if storage.exists(path, endpoint):
            return path
        raise FileNotFoundError(f"{path}: no such checkpoint file or folder")
    def modified(file: str) -> float | None:  # None: gone, or a symlink to nothing
        try:
            return storage.modified(file, endpoint)
        except FileNotFoundError:
            return None

    found = [(t, f) for f in storage.list_files(path, endpoint=endpoint) if f.endswith(CHECKPOINT_SUFFIXES)
             and (t := modified(f)) is not None]
    if not found:
        raise FileNotFoundError(f"{path}: no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)}) under it")
    return max(found)[1]


def best_earlier_run(cfg: BenchmarkConfig, current: dict, primary_key: str) -> dict | None:
    """The finished benchmark run with the lowest primary metric among comparable earlier runs."""
    from services.tracking.queries import search_runs

    runs = search_runs(cfg.eval.tracking_uri, cfg.eval.experiment,
                       filter_string="tags.`fomm.kind` = 'benchmark' and attributes.status = 'FINISHED'")
    same = [r for r in runs if r["run_id"] != current["run_id"]
            and r["start_time"] <= current["start_time"]
            and all(r["params"].get(k) == current["params"].get(k) for k in MATCH_PARAMS)
            and math.isfinite(r["metrics"].get(primary_key, float("nan")))]
    return min(same, key=lambda r: r["metrics"][primary_key]) if same else None


def unmeasured(cfg: BenchmarkConfig) -> str | None:
    """Why a metric of `cfg.metrics` will not be measured with the extractors the evaluation was told to use."""
    e = cfg.eval
    off = {"akd": e.keypoints == "none" and "--keypoints none", "aed": e.embedding == "none" and "--embedding none",
           "mkr": (e.use_mkr is False and "--no-mkr") or (e.keypoints == "none" and "--keypoints none")}
    return next((f"{m} is not measured with {off[m]}" for m in cfg.metrics if off.get(m)), None)


def judge(result: EvalResult, metrics: tuple[str, ...] | list[str], max_error_fraction: float = 0.0,
          best: dict[str, float] | None = None, threshold: float = 0.05,
          abs_tolerance: float = 1e-6) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """Everything that fails an evaluation: a share of failed clips above `max_error_fraction`, a metric without a
    value, a metric worse than `best` by more than the threshold; plus (current, best) per metric compared (not one
    whose best is not finite or absent: no baseline)."""
    regressions, compared = [], {}
    share = len(result.errors) / result.num_clips if result.num_clips else 0.0
    if result.errors and share > max_error_fraction:  # named with the commonest errors
        groups: dict[str, list[str]] = {}
        for row in result.errors:
            groups.setdefault(str(row.get("error") or "unknown error").split(" | ")[0], []).append(str(row["clip_id"]))
        ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
        parts = [f"{len(clips)}× {message} (e.g. {clips[0]})" for message, clips in ranked[:3]]
        more = [f"{len(ranked) - 3} more kinds"] if len(ranked) > 3 else []
        regressions.append(f"errors: {len(result.errors)} of {result.num_clips} clips failed ({share:.0%} > "
                           f"--max-error-fraction {max_error_fraction:.0%}): {'; '.join(parts + more)}")
    for key in (result.labels[m] for m in metrics if m in result.labels):
        now, then = result.metrics.get(key), (best or {}).get(key, float("nan"))
        if now is None or not math.isfinite(now):
            regressions.append(f"{key}: {'missing' if now is None else now} (no frame could be scored)")
        elif math.isfinite(then):
            compared[key] = (now, then)
            if now > (limit := then * (1 + threshold) + abs_tolerance):
                regressions.append(f"{key}: {now:.5f} > {limit:.5f} (best {then:.5f} + {threshold:.0%})")
    return regressions, compared


def run_benchmark(cfg: BenchmarkConfig) -> BenchmarkResult:
    """Evaluate the newest checkpoint as a 'benchmark' run, then judge it against the best earlier run."""
    from evaluation.ray_jobs import evaluate
    from services.tracking.queries import get_run
    from services.tracking.registry import download_model_version, latest_model_version, set_alias
    from services.tracking.run import Tracker

    with scratch_dir("benchmark") as workdir:
        if cfg.checkpoints is not None:  # the checkpoint (local or s3), and tags naming where it came from
            checkpoint = newest_checkpoint(cfg.checkpoints, cfg.eval.endpoint)
            source_tags = {"benchmark.source": cfg.checkpoints}
        else:
            version = latest_model_version(cfg.eval.tracking_uri, cfg.model_name)["version"]
            local = download_model_version(cfg.eval.tracking_uri, cfg.model_name, version, workdir)
            checkpoint = newest_checkpoint(str(local))
            source_tags = {"benchmark.model_name": cfg.model_name, "benchmark.model_version": str(version)}
        eval_cfg = dataclasses.replace(cfg.eval, checkpoint=checkpoint,
                                       tags={**cfg.eval.tags, **source_tags, "fomm.kind": "benchmark"})
        result = evaluate(eval_cfg)
    current = get_run(eval_cfg.tracking_uri, result.run_id)
    primary = result.labels.get(cfg.primary, cfg.primary)
    baseline = best_earlier_run(cfg, current, primary)
    regressions, compared = judge(result, cfg.metrics, cfg.max_error_fraction,
                                  baseline["metrics"] if baseline else None, cfg.threshold, cfg.abs_tolerance)
    tracker = Tracker(eval_cfg.tracking_uri, eval_cfg.experiment, run_id=result.run_id)
    tracker.set_tags({"benchmark.baseline_run_id": baseline["run_id"] if baseline else "none",
                      "benchmark.regression": str(bool(regressions)).lower(),
                      "benchmark.regressions": "; ".join(regressions)[:5000]})
    promoted = None
    try:
        if cfg.promote is not None and not regressions:  # the guarded model: models:/NAME@ALIAS is this version now
            set_alias(eval_cfg.tracking_uri, cfg.model_name, cfg.promote, version)
            promoted = f"models:/{cfg.model_name}@{cfg.promote} is version {version}"
            tracker.set_tags({"benchmark.promoted": cfg.promote})
    finally:  # a regression ends the run FAILED, as a failed evaluate's does: never a later run's baseline (only
        # FINISHED ones are); an alias the registry refuses is the stage's error, not the run's
        if regressions:
            tracker.end("FAILED", reason="REGRESSION: " + "; ".join(regressions))
        else:
            tracker.end("FINISHED")
    return BenchmarkResult(result=result, checkpoint=checkpoint, baseline=baseline, regressions=regressions,
                           compared=compared, promoted=promoted)
