"""Evaluation without Ray: config, extractors, per-clip reconstruction, per-frame scoring and per-video tables."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluation import metrics
from evaluation.extractors import EmbeddingExtractor, ExtractorError, KeypointExtractor, build_backend
from services.fields import check_fields, rule
from services.ray_start import MAX_NODE_CPUS

if TYPE_CHECKING:  # torch: imported where clips are reconstructed, not where flags are checked
    from evaluation.reconstruction import ReconstructionModel

DOMAINS = ("face", "body", "synthetic")
IDENT = ("video_id", "clip_id", "person_id")  # what names a clip in every table
# what one clip may fail with and the job go on (bad or unreadable frames, non-finite model output, an extractor's
# library failing); anything else is a bug and raises
DATA_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, EOFError, ExtractorError)


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Everything one evaluation run needs; logged whole to MLflow."""

    config_path: str = field(metadata=rule("FOMM model config YAML (e.g. configs/vox-256.yaml)", flag="--config"))
    checkpoint: str | None = field(metadata=rule(  # None = random init (smoke tests only)
        "original-format checkpoint (local or s3://; or models:/NAME/VERSION or @ALIAS); 'random-init' = untrained "
        "smoke run"))
    data: str = field(metadata=rule("clip shards: dataset root, shard folder or file (local or s3://)"))
    out_dir: str = field(default="eval_output", metadata=rule("folder for Parquet tables and the report", flag="--out"))
    split: str | None = field(default="test", metadata=rule("shard split to evaluate; 'all' for every clip"))
    max_videos: int | None = field(default=None, metadata=rule(  # in shard order (a fixed benchmark set)
        "evaluate only the first N clips", ge=1))
    domain: str = field(default="face", metadata=rule("picks the 'auto' extractors and MKR (on for body)",
                                                      choices=DOMAINS))
    keypoints: str = field(default="auto", metadata=rule(  # a backend's name, 'auto' or 'none'
        "AKD/MKR backend; auto = the paper's if its weights are here, else an offline one"))
    embedding: str = field(default="auto", metadata=rule("AED backend; auto as above"))
    use_mkr: bool | None = field(default=None, metadata=rule("report MKR", flag="--mkr"))  # None: for bodies (paper)
    extractor_options: dict[str, dict[str, Any]] = field(default_factory=dict, metadata=rule(  # backend → kwargs
        "YAML/JSON mapping backend → options, e.g. \"{face-alignment: {hub_dir: /models/hub}}\""))
    batch_size: int = field(default=16, metadata=rule("frames per generator call", ge=1))
    num_workers: int = field(default=2, metadata=rule("Ray Data actors (0 = no Ray, in-process)", ge=0,
                                                      flag="--workers"))
    cpus_per_worker: float = field(default=1.0, metadata=rule("CPUs per Ray Data actor", gt=0, le=MAX_NODE_CPUS))
    device: str = field(default="cpu", metadata=rule("cpu, cuda or cuda:N"))
    endpoint: str | None = field(default=None, metadata=rule("S3 endpoint override for s3:// paths"))
    tracking_uri: str | None = field(default=None, metadata=rule(
        "MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///./mlruns/mlflow.db)"))
    experiment: str = field(default="fomm-eval", metadata=rule("MLflow experiment"))
    run_name: str | None = field(default=None, metadata=rule("MLflow run name (default: MLflow's generated one)"))
    tags: dict[str, str] = field(default_factory=dict)
    report_cases: int = field(default=1, metadata=rule(ge=0))  # worst and best clips shown in the report
    report_frames: int = field(default=6, metadata=rule(ge=1))  # frames per strip in the PNG report

    def __post_init__(self) -> None:
        check_fields(self)  # the declared rules: finite numbers in range, choices


@dataclass(frozen=True)
class Extractors:
    """The extractors one evaluation uses (None = metric off) and whether MKR is reported (bodies)."""

    keypoints: KeypointExtractor | None = None
    embedding: EmbeddingExtractor | None = None
    use_mkr: bool = False

    def _families(self) -> list[tuple[str, Any, list[str]]]:
        """(family, extractor, its per-frame metrics) for each extractor in use."""
        families = [("akd", self.keypoints, ["akd", "akd_l2"] + (["mkr"] if self.use_mkr else [])),
                    ("aed", self.embedding, ["aed", "aed_l2"])]
        return [f for f in families if f[1] is not None]

    def labels(self) -> dict[str, str]:
        """Each per-frame metric `score_video` gives → its name with its backend, e.g. 'akd/dlib-68'."""
        return {"l1": "l1", **{k: f"{k}/{e.name}" for _, e, keys in self._families() for k in keys}}

    def describe(self) -> dict[str, str]:
        """What each metric was computed with: backend, network and formula (logged with every run)."""
        out = {"l1.formula": metrics.FORMULAS["l1"]}
        for family, extractor, keys in self._families():
            out.update({f"{family}.backend": extractor.name,
                        f"{family}.network": f"{extractor.name} ({extractor.network})"})
            out.update({f"{k}.formula": metrics.FORMULAS[k] for k in keys})
        return out


def score_video(real: np.ndarray, generated: np.ndarray, extractors: Extractors) -> dict[str, np.ndarray]:
    """Per-frame metrics of one video: real, generated T×H×W×3 uint8 → {metric: T floats (NaN = skipped)}."""
    out: dict[str, np.ndarray] = {"l1": metrics.l1_per_frame(real, generated)}
    if extractors.keypoints is not None:
        kp_real, present_real = _extract(extractors.keypoints, real)  # T×N×2, T×N
        kp_gen, present_gen = _extract(extractors.keypoints, generated)
        out.update(metrics.akd_per_frame(kp_real, kp_gen, present_real, present_gen))
        if extractors.use_mkr:
            out["mkr"] = metrics.mkr_per_frame(present_real, present_gen)
    if extractors.embedding is not None:
        out.update(metrics.aed_per_frame(_extract(extractors.embedding, real),
                                         _extract(extractors.embedding, generated)))
    return out


def _extract(extractor: KeypointExtractor | EmbeddingExtractor, frames: np.ndarray):  # noqa: ANN202 - either's output
    """The extractor's output; a failure inside its library (RuntimeError) becomes an ExtractorError naming it."""
    try:
        return extractor(frames)
    except RuntimeError as err:
        raise ExtractorError(f"{extractor.name}: {err}") from err


def build_extractors(cfg: EvalConfig) -> tuple[Extractors, list[str]]:
    """Resolve 'auto' backends for the domain and build them; returns (extractors, notes on fallbacks)."""
    keypoints, _, notes = build_backend("keypoints", cfg.keypoints, cfg.domain, cfg.extractor_options)
    embedding, _, emb_notes = build_backend("embedding", cfg.embedding, cfg.domain, cfg.extractor_options)
    use_mkr = cfg.domain == "body" if cfg.use_mkr is None else cfg.use_mkr
    return Extractors(keypoints=keypoints, embedding=embedding, use_mkr=use_mkr), notes + emb_notes


def evaluate_clip(clip_row: dict, model: ReconstructionModel, extractors: Extractors, batch_size: int = 16,
                  device: str = "cpu") -> list[dict]:
    """Reconstruct and score one shard row: one row per frame, or for bad data (`DATA_ERRORS`) one error row."""
    from evaluation.reconstruction import reconstruct_video  # it refuses a clip without frames
    from preprocessing.shards import decode_frames

    ident = {k: clip_row.get(k) or "" for k in IDENT}
    keys = list(extractors.labels())
    try:
        result = reconstruct_video(model, decode_frames(clip_row.get("frames") or []), batch_size, device)
        scores = score_video(result["real"], result["prediction"], extractors)
    except DATA_ERRORS as err:
        message = f"{type(err).__name__}: {err}"
        tail = traceback.format_exc(limit=3).strip().splitlines()[-3:]
        return [{**ident, "frame": -1, **{k: float("nan") for k in keys},
                 "error": message + " | " + " / ".join(tail)}]
    return [{**ident, "frame": t, **{k: float(scores[k][t]) for k in keys}, "error": None}
            for t in range(len(result["real"]))]


def per_video(frame_rows: list[dict], keys: list[str]) -> list[dict]:
    """One row per clip: each metric's mean over its scored frames, and the number of frames."""
    groups: dict[str, list[dict]] = {}
    for row in frame_rows:
        groups.setdefault(row["clip_id"], []).append(row)
    return [{**{k: rows[0][k] for k in IDENT}, "num_frames": len(rows),
             **{k: metrics.nanmean([r[k] for r in rows]) for k in keys}} for rows in groups.values()]


def aggregate_frames(frame_rows: list[dict], keys: list[str]) -> dict[str, float]:
    """Data-set figures: means over all scored frames of all clips (the original's pooling)."""
    return {**metrics.aggregate({k: [r[k] for r in frame_rows] for k in keys}),
            "num_videos": float(len({r["clip_id"] for r in frame_rows})), "num_frames": float(len(frame_rows))}
