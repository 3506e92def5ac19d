"""fomm: the First Order Motion Model (Siarohin et al., NeurIPS 2019), drop-in with the original checkpoints."""

from fomm.animation import find_best_frame, normalize_kp
from fomm.animator import Animator, AnimatorError
from fomm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fomm.config import ConfigError, FommConfig, ModelConfig, TrainParams, load_config
from fomm.dense_motion import DenseMotionNetwork
from fomm.discriminator import MultiScaleDiscriminator
from fomm.generator import OcclusionAwareGenerator
from fomm.geometry import Keypoints, heatmap_to_keypoints, kp2gaussian, make_coordinate_grid
from fomm.keypoint_detector import KPDetector

__all__ = [
    "Animator", "AnimatorError", "CheckpointError", "ConfigError", "DenseMotionNetwork", "FommConfig", "KPDetector",
    "Keypoints", "ModelConfig", "MultiScaleDiscriminator", "OcclusionAwareGenerator", "TrainParams",
    "find_best_frame", "heatmap_to_keypoints", "kp2gaussian", "load_checkpoint", "load_config",
    "make_coordinate_grid", "normalize_kp", "save_checkpoint",
]
