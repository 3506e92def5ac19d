"""Score one reconstructed video against its ground truth: per-frame L1, AKD, MKR and AED rows (plain numpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluation import metrics
from evaluation.extractors import EmbeddingExtractor, ExtractorError, KeypointExtractor, describe

PER_FRAME_METRICS = ("l1", "akd", "akd_l2", "mkr", "aed", "aed_l2")


@dataclass(frozen=True)
class Extractors:
    """The extractors one evaluation uses (None = metric off) and whether MKR is reported (bodies)."""

    keypoints: KeypointExtractor | None = None
    embedding: EmbeddingExtractor | None = None
    use_mkr: bool = False

    def describe(self) -> dict[str, str]:
        """What each metric was computed with: backend, network and formula (logged with every run)."""
        out = {"l1.formula": metrics.FORMULAS["l1"]}
        if self.keypoints is not None:
            out.update({"akd.backend": self.keypoints.name, "akd.network": describe(self.keypoints),
                        "akd.formula": metrics.FORMULAS["akd"], "akd_l2.formula": metrics.FORMULAS["akd_l2"]})
            if self.use_mkr:
                out["mkr.formula"] = metrics.FORMULAS["mkr"]
        if self.embedding is not None:
            out.update({"aed.backend": self.embedding.name, "aed.network": describe(self.embedding),
                        "aed.formula": metrics.FORMULAS["aed"], "aed_l2.formula": metrics.FORMULAS["aed_l2"]})
        return out


def score_video(real: np.ndarray, generated: np.ndarray, extractors: Extractors) -> dict[str, np.ndarray]:
    """Per-frame metrics of one video: real, generated T×H×W×3 uint8 → {metric: T floats (NaN = skipped)}.

    Keys: always 'l1'; 'akd', 'akd_l2' with a keypoint extractor ('mkr' too when `use_mkr`); 'aed', 'aed_l2'
    with an embedding extractor.
    """
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


def metric_keys(extractors: Extractors) -> list[str]:
    """The per-frame metric names `score_video` produces with these extractors."""
    keys = ["l1"]
    if extractors.keypoints is not None:
        keys += ["akd", "akd_l2"] + (["mkr"] if extractors.use_mkr else [])
    if extractors.embedding is not None:
        keys += ["aed", "aed_l2"]
    return keys


def labelled(name: str, extractors: Extractors) -> str:
    """A metric's name with the backend that produced it, e.g. 'akd/dlib-68'; L1 needs no backend."""
    if name.startswith(("akd", "mkr")) and extractors.keypoints is not None:
        return f"{name}/{extractors.keypoints.name}"
    if name.startswith("aed") and extractors.embedding is not None:
        return f"{name}/{extractors.embedding.name}"
    return name
