"""Metric extractors (landmarks, body pose, identity embeddings) behind one protocol, built lazily by name; each
names its `network`, and weights load from local files only (`MissingWeightsError` names a missing one)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from services.errors import MissingWeightsError, UserError


class BackendUnavailableError(UserError, ImportError):
    """A backend's Python package is not installed."""


class ExtractorError(RuntimeError):
    """A keypoint or embedding backend failed on one clip's frames (a data error: the clip's row records it)."""


@runtime_checkable
class KeypointExtractor(Protocol):
    name: str
    network: str
    num_points: int

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames T×H×W×3 uint8 → (points T×N×2 pixels (x, y), present T×N bool)."""


@runtime_checkable
class EmbeddingExtractor(Protocol):
    name: str
    network: str

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """frames T×H×W×3 uint8 → embeddings T×D (NaN rows where nothing was found)."""


# name → "module:Class"; modules import their heavy dependencies only when a backend is built
KEYPOINT_BACKENDS: dict[str, str] = {
    "face-alignment": "evaluation.backends_face:FaceAlignmentLandmarks",
    "dlib-68": "evaluation.backends_face:Dlib68Landmarks",
    "openpose-coco-18": "evaluation.backends_body:OpenPoseCoco18",
    "opencv-hog-person-box": "evaluation.backends_body:HogPersonBox",
    "foreground-centroids": "evaluation.backends_offline:ForegroundCentroids",
}
EMBEDDING_BACKENDS: dict[str, str] = {
    "openface": "evaluation.backends_face:OpenFaceEmbedding",
    "dlib-resnet-128": "evaluation.backends_face:DlibResNetEmbedding",
    "colour-histogram": "evaluation.backends_offline:ColourHistogram",
}
# `auto` per domain: the paper's backend first, then what works offline; the chosen one is always recorded
AUTO_ORDER: dict[str, dict[str, list[str]]] = {
    "face": {"keypoints": ["face-alignment", "dlib-68", "foreground-centroids"],
             "embedding": ["openface", "dlib-resnet-128", "colour-histogram"]},
    "body": {"keypoints": ["openpose-coco-18", "opencv-hog-person-box"],
             "embedding": ["colour-histogram"]},
    "synthetic": {"keypoints": ["foreground-centroids"], "embedding": ["colour-histogram"]},
}


BACKENDS = {"keypoints": KEYPOINT_BACKENDS, "embedding": EMBEDDING_BACKENDS}


def _backend_class(spec: str) -> type:
    """The class a BACKENDS entry ("module:Class") names, its module imported."""
    module, cls = spec.split(":")
    return getattr(importlib.import_module(module), cls)


def make_extractor(kind: str, name: str, **options: Any) -> KeypointExtractor | EmbeddingExtractor:
    """Build the `kind` ('keypoints' / 'embedding') backend `name` with its options (e.g. weights paths)."""
    if name not in BACKENDS[kind]:
        raise ValueError(f"unknown {kind} backend {name!r}; choose from {sorted(BACKENDS[kind])}")
    return _backend_class(BACKENDS[kind][name])(**options)


def option_problem(name: str, key: str, value: Any) -> str | None:
    """Why backend `name` cannot take option `key`=`value` (not one of its constructor's, or not of its default's
    kind; a default of None is a path), else None: each was a traceback once the evaluation had started."""
    params = inspect.signature(_backend_class({**KEYPOINT_BACKENDS, **EMBEDDING_BACKENDS}[name])).parameters
    if key not in params:
        return f"not an option of {name} (it takes {', '.join(params) or 'none'})"
    default = params[key].default
    kind, size = str if default is None else type(default), len(default) if isinstance(default, tuple) else 0
    kinds = {bool: "true or false", int: "a whole number", float: "a number", tuple: f"{size} whole numbers",
             str: "a text (a path where the default is none)"}
    fits = {bool: isinstance(value, bool), int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            tuple: isinstance(value, list) and len(value) == size and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value),
            str: isinstance(value, str) and bool(value)}.get(kind, True)
    return None if fits else f"expected {kinds[kind]}"


def build_backend(kind: str, name: str, domain: str, options: dict | None = None) -> tuple[Any, str, list[str]]:
    """The `kind` backend `name`, or for 'auto' the first of the domain's order that can be built here; returns
    (extractor or None for 'none', its name, notes on skipped candidates)."""
    options = options or {}
    if name == "none":
        return None, "none", []
    if name != "auto":
        return make_extractor(kind, name, **options.get(name, {})), name, []
    notes: list[str] = []
    for candidate in AUTO_ORDER[domain][kind]:
        try:
            return make_extractor(kind, candidate, **options.get(candidate, {})), candidate, notes
        except (MissingWeightsError, BackendUnavailableError) as err:
            notes.append(f"{candidate} unavailable: {err}")
    raise RuntimeError(f"no {kind} backend available for domain {domain!r}: " + "; ".join(notes))


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate frames T×H×W×3 uint8 (RGB)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"extractor input must be T×H×W×3 uint8 RGB, got {frames.shape} {frames.dtype}")
    return frames


def per_frame(frames: np.ndarray, find: Callable[[np.ndarray], Any], shape: tuple[int, ...]) -> np.ndarray:
    """`find` on each frame of T×H×W×3 uint8 (checked, made contiguous) → T×shape, NaN where it found None."""
    frames = check_frames(frames)
    out = np.full((len(frames), *shape), np.nan)
    for t, frame in enumerate(frames):
        found = find(np.ascontiguousarray(frame))
        if found is not None:
            out[t] = found
    return out
