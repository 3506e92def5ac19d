"""Reconstruction metrics of the paper's Sec. 4 (Table 3) over numpy arrays, with the original code's arithmetic: per
frame (`FORMULAS`: AED is the *squared* distance), NaN where a frame cannot be scored, pooled over all frames."""

from __future__ import annotations

import numpy as np

FORMULAS = {  # each per-frame metric → its formula
    "l1": "mean |real - generated| over pixels in [0, 1]",
    "akd": "mean over keypoints present in both of mean |dx|,|dy| (pixels); frames w/o generated detection skipped",
    "akd_l2": "mean over keypoints present in both of sqrt(dx^2 + dy^2) (pixels)",
    "mkr": "(#present in real and missing in generated) / (#present in real)",
    "aed": "sum over dims of (e_real - e_generated)^2 (squared L2), mean over frames",
    "aed_l2": "sqrt(sum over dims of (e_real - e_generated)^2), mean over frames",
}

SHORT_FORMULAS = {"l1": "mean |Δ|, pixels in [0,1]", "akd": "mean |Δx|,|Δy| px", "akd_l2": "mean ‖Δ‖₂ px",
                  "mkr": "missed / present in real", "aed": "Σ Δe² (squared L2)", "aed_l2": "‖Δe‖₂"}


def to_unit(frames: np.ndarray) -> np.ndarray:
    """Frames as float64 in [0, 1]: uint8 is divided by 255, floats are taken as already in [0, 1]."""
    frames = np.asarray(frames)
    return frames.astype(np.float64) / (255.0 if frames.dtype == np.uint8 else 1.0)


def l1_per_frame(real: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """Mean absolute pixel difference per frame: T×H×W×C (uint8 or [0, 1] floats) → T."""
    real, generated = to_unit(real), to_unit(generated)
    if real.shape != generated.shape:
        raise ValueError(f"L1: real {real.shape} and generated {generated.shape} differ in shape")
    return np.abs(real - generated).reshape(real.shape[0], -1).mean(axis=1)


def _present(points: np.ndarray, present: np.ndarray | None) -> np.ndarray:
    """Presence mask T×N: given, or 'coordinates are finite'."""
    finite = np.isfinite(points).all(axis=-1)  # T×N
    return finite if present is None else (np.asarray(present, dtype=bool) & finite)


def akd_per_frame(kp_real: np.ndarray, kp_generated: np.ndarray, present_real: np.ndarray | None = None,
                  present_generated: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Average keypoint distance per frame: kp T×N×2 in pixels → {'akd': T, 'akd_l2': T} (NaN = skipped)."""
    kp_real, kp_generated = np.asarray(kp_real, np.float64), np.asarray(kp_generated, np.float64)
    if kp_real.shape != kp_generated.shape or kp_real.ndim != 3 or kp_real.shape[-1] != 2:
        raise ValueError(f"AKD: expected two T×N×2 arrays, got {kp_real.shape} and {kp_generated.shape}")
    both = _present(kp_real, present_real) & _present(kp_generated, present_generated)  # T×N
    diff = np.where(both[..., None], kp_real - kp_generated, 0.0)  # T×N×2
    count = both.sum(axis=1)  # T
    with np.errstate(invalid="ignore", divide="ignore"):
        akd = np.abs(diff).sum(axis=(1, 2)) / (2 * count)
        akd_l2 = np.sqrt((diff ** 2).sum(axis=2)).sum(axis=1) / count
    return {"akd": np.where(count > 0, akd, np.nan), "akd_l2": np.where(count > 0, akd_l2, np.nan)}


def mkr_per_frame(present_real: np.ndarray, present_generated: np.ndarray) -> np.ndarray:
    """Missing keypoint rate per frame: presence flags T×N → T (NaN when the real frame has none)."""
    present_real, present_generated = np.asarray(present_real, bool), np.asarray(present_generated, bool)
    if present_real.shape != present_generated.shape:
        raise ValueError(f"MKR: presence shapes differ: {present_real.shape} vs {present_generated.shape}")
    total = present_real.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (present_real & ~present_generated).sum(axis=1) / total, np.nan)


def aed_per_frame(emb_real: np.ndarray, emb_generated: np.ndarray) -> dict[str, np.ndarray]:
    """Embedding distance per frame: T×D each (NaN rows = no embedding) → {'aed': squared L2, 'aed_l2': L2}."""
    emb_real, emb_generated = np.asarray(emb_real, np.float64), np.asarray(emb_generated, np.float64)
    if emb_real.shape != emb_generated.shape or emb_real.ndim != 2:
        raise ValueError(f"AED: expected two T×D arrays, got {emb_real.shape} and {emb_generated.shape}")
    squared = ((emb_real - emb_generated) ** 2).sum(axis=1)  # NaN propagates from missing embeddings
    return {"aed": squared, "aed_l2": np.sqrt(squared)}


def nanmean(values: np.ndarray) -> float:
    """Mean over finite values; NaN when there is none (no warning)."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    return float(values[ok].mean()) if ok.any() else float("nan")


def aggregate(per_frame: dict[str, np.ndarray]) -> dict[str, float]:
    """Data-set figures: each metric's mean over all scored (finite) frames, plus how many frames were scored."""
    out: dict[str, float] = {}
    for name, values in per_frame.items():
        out[name] = nanmean(values)
        out[f"{name}_frames"] = float(np.isfinite(np.asarray(values, dtype=np.float64)).sum())
    return out
