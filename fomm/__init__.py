"""fomm: the First Order Motion Model (Siarohin et al., NeurIPS 2019), drop-in with the original checkpoints.

The names below load their module on first use, so numpy-only parts (`fomm.visualization`) import without torch.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "animation": ["find_best_frame", "normalize_kp"],
    "animator": ["Animator", "AnimatorError"],
    "checkpoint": ["CheckpointError", "load_checkpoint", "save_checkpoint"],
    "config.loader": ["ConfigError"],
    "config.schema": ["FommConfig", "ModelConfig", "TrainParams", "load_config"],
    "dense_motion": ["DenseMotionNetwork"],
    "discriminator": ["MultiScaleDiscriminator"],
    "generator": ["OcclusionAwareGenerator"],
    "geometry": ["Keypoints", "heatmap_to_keypoints", "kp2gaussian", "make_coordinate_grid"],
    "keypoint_detector": ["KPDetector"],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> object:
    """`fomm.Animator` etc.: import the home module once, then the name is a plain attribute."""
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"fomm.{_MODULE_OF[name]}"), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"fomm.{name}")  # a submodule, as the eager import used to provide
    except ModuleNotFoundError as err:
        if err.name != f"fomm.{name}":
            raise
        raise AttributeError(f"module 'fomm' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
