"""Typed configs mirroring the sections of the original FOMM YAML files (which load unchanged)."""

from __future__ import annotations

import warnings
from dataclasses import field
from pathlib import Path
from typing import ClassVar

from fomm.config.loader import ConfigError, Section, build, read_yaml, section, to_dict
from fomm.config.model_params import ModelConfig, discriminator_fits, pyramid_sides

# ---------------------------------------------------------------- train_params


@section
class TransformParams(Section):
    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5
    non_negative: ClassVar = ("sigma_affine", "sigma_tps", "points_tps")  # 0 points: an affine warp only


@section
class LossWeights(Section):
    generator_gan: float = 0.0
    discriminator_gan: float = 1.0
    feature_matching: tuple[float, ...] = (10, 10, 10, 10)
    perceptual: tuple[float, ...] = (10, 10, 10, 10, 10)
    equivariance_value: float = 10.0
    equivariance_jacobian: float = 10.0
    # our addition (0: the original losses): fomm.losses.keypoint_separation_loss, σ in keypoint units ([-1, 1])
    keypoint_separation: float = 0.0
    keypoint_separation_sigma: float = 0.1
    positive: ClassVar = ("keypoint_separation_sigma",)
    non_negative: ClassVar = ("generator_gan", "discriminator_gan", "feature_matching", "perceptual",
                              "equivariance_value", "equivariance_jacobian", "keypoint_separation")

    def __post_init__(self) -> None:
        Section.__post_init__(self)
        if len(self.perceptual) != 5:
            raise ValueError(f"perceptual needs 5 weights (VGG-19 relu1_1..relu5_1), got {len(self.perceptual)}")


@section
class TrainParams(Section):
    num_epochs: int = 100
    num_repeats: int = 75
    epoch_milestones: tuple[int, ...] = (60, 90)
    lr_generator: float = 2.0e-4
    lr_discriminator: float = 2.0e-4
    lr_kp_detector: float = 2.0e-4
    batch_size: int = 40
    scales: tuple[float, ...] = (1, 0.5, 0.25, 0.125)
    checkpoint_freq: int = 50
    transform_params: TransformParams = field(default_factory=TransformParams)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    # our additions (absent from the original files; defaults keep the original behaviour)
    checkpoint_every_steps: int | None = None
    bf16: bool | str = "auto"  # true, false or "auto": bf16 autocast where the device has native bf16 (fomm.precision)
    channels_last: bool | str = "auto"  # true, false or "auto": on where the step runs in bf16 (fomm.precision)
    seed: int = 0
    # from this epoch (a budget schedule: fraction epoch / num_epochs) the kp detector's and generator's batch norms
    # use and keep their running statistics (weights train on): small batches stop shifting each image's colours
    freeze_batch_norm_epoch: int | None = None
    positive: ClassVar = ("num_epochs", "num_repeats", "batch_size", "checkpoint_freq")  # 0 epochs: refused
    at_most: ClassVar = {"seed": 2**32 - 1}  # numpy's seeds
    downscales: ClassVar = ("scales",)
    non_negative: ClassVar = ("lr_generator", "lr_discriminator", "lr_kp_detector",  # 0: that network stays as it is
                              "epoch_milestones", "checkpoint_every_steps", "freeze_batch_norm_epoch", "seed")

    def __post_init__(self) -> None:
        Section.__post_init__(self)
        for name in ("bf16", "channels_last"):
            if getattr(self, name) not in (True, False, "auto"):
                raise ValueError(f"{name} must be true, false or auto, got {getattr(self, name)!r}")
        first_decay = min(self.epoch_milestones, default=None)
        if self.freeze_batch_norm_epoch is not None and (first_decay is None or self.freeze_batch_norm_epoch < first_decay):
            warnings.warn(f"train_params.freeze_batch_norm_epoch {self.freeze_batch_norm_epoch} comes before the first "
                          f"learning-rate decay (epoch_milestones {list(self.epoch_milestones)}): at the full rate, "
                          "frozen batch norm diverged in our trials; freeze at or after a decay", stacklevel=2)


# ---------------------------------------------------------------- other sections


@section
class FlipParams(Section):
    horizontal_flip: bool = False
    time_flip: bool = False


@section
class JitterParams(Section):
    """Colour jitter strengths; a key absent from the file means no jitter of that kind."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    non_negative: ClassVar = ("brightness", "contrast", "saturation", "hue")  # a factor in [1 − v, 1 + v]


@section
class CropParams(Section):
    """The original's RandomCrop: a [H, W] window at a random place (preprocessing.pairs)."""

    size: tuple[int, ...] = (256, 256)
    positive: ClassVar = ("size",)

    def __post_init__(self) -> None:
        Section.__post_init__(self)
        if len(self.size) != 2:
            raise ValueError(f"size must be [H, W], got {list(self.size)}")


@section
class ResizeParams(Section):
    """The original's RandomResize: a zoom by a factor drawn in [low, high] (preprocessing.pairs)."""

    ratio: tuple[float, ...] = (0.9, 1.1)
    positive: ClassVar = ("ratio",)

    def __post_init__(self) -> None:
        Section.__post_init__(self)
        if len(self.ratio) != 2 or self.ratio[0] > self.ratio[1]:
            raise ValueError(f"ratio must be [low, high], got {list(self.ratio)}")


@section
class AugmentationParams(Section):
    """The original's `augmentation_params`, the one augmentation config (preprocessing.pairs applies it)."""

    flip_param: FlipParams | None = None
    jitter_param: JitterParams | None = None
    crop_param: CropParams | None = None
    resize_param: ResizeParams | None = None

    @property
    def flips(self) -> FlipParams:
        return self.flip_param or FlipParams()

    @property
    def jitter(self) -> dict[str, float]:
        """Colour jitter strength by kind (0: none), in the order torchvision's ColorJitter lists them."""
        return to_dict(self.jitter_param or JitterParams())


SUBJECT_KINDS = ("face", "person", "none")
CROP_MODES = ("center", "pad", "none")  # how a frame is fitted to the model's size (fomm.animator.fit_frames)
PRECISIONS = ("auto", "fp32", "bf16")  # inference arithmetic (fomm.precision)


@section
class DatasetParams(Section):
    root_dir: str = ""
    frame_shape: tuple[int, ...] = (256, 256, 3)
    image_shape: tuple[int, ...] | None = None  # older original files spell frame_shape so
    id_sampling: bool = False
    pairs_list: str | None = None
    augmentation_params: AugmentationParams = field(default_factory=AugmentationParams)
    # our addition: face, person or none (None: from root_dir's name, vox → face, …), for `fomm animate --crop auto`
    subject_kind: str | None = None

    def __post_init__(self) -> None:
        Section.__post_init__(self)
        if self.subject_kind not in (None, *SUBJECT_KINDS):
            raise ValueError(f"subject_kind must be one of {', '.join(SUBJECT_KINDS)}, got {self.subject_kind!r}")
        for name in ("frame_shape", "image_shape"):
            shape = getattr(self, name)
            if shape is not None and (len(shape) not in (2, 3) or min(shape) <= 0):
                raise ValueError(f"{name} must be [H, W] or [H, W, C] of positive sizes, got {list(shape)}")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.image_shape or self.frame_shape


@section
class ReconstructionParams(Section):
    num_videos: int | None = 1000
    format: str = ".mp4"


@section
class NormalizationParams(Section):
    adapt_movement_scale: bool = False
    use_relative_movement: bool = True
    use_relative_jacobian: bool = True


@section
class AnimateParams(Section):
    num_pairs: int = 50
    format: str = ".mp4"
    normalization_params: NormalizationParams = field(default_factory=NormalizationParams)
    positive: ClassVar = ("num_pairs",)


@section
class VisualizerParams(Section):
    """How keypoints are drawn (evaluation.visualize.draw_styled_kp): disc radius on the model's frames, a colormap."""

    kp_size: int = 5
    draw_border: bool = True  # a white frame round each picture of the training grid
    colormap: str = "gist_rainbow"
    non_negative: ClassVar = ("kp_size",)


@section
class FommConfig(Section):
    """A whole original-format config file: every section, typed."""

    dataset_params: DatasetParams = field(default_factory=DatasetParams)
    model_params: ModelConfig = field(default_factory=ModelConfig)
    train_params: TrainParams = field(default_factory=TrainParams)
    reconstruction_params: ReconstructionParams = field(default_factory=ReconstructionParams)
    animate_params: AnimateParams = field(default_factory=AnimateParams)
    visualizer_params: VisualizerParams = field(default_factory=VisualizerParams)
    prediction_params: dict | None = None  # the original's optional 'prediction' module (unused here)

    def __post_init__(self) -> None:
        Section.__post_init__(self)
        if self.model_params.common_params.num_channels != 3:
            raise ValueError(f"model_params.common_params: num_channels must be 3 (frames are read as RGB), got "
                             f"{self.model_params.common_params.num_channels}")
        if len(shape := self.dataset_params.shape) == 3 and shape[2] != 3:  # a grey set would train as RGB anyway
            raise ValueError(f"dataset_params.frame_shape: C must be 3 (frames are read as RGB), got {list(shape)}")
        self.check_frame(shape[:2], "dataset_params.frame_shape")

    def check_frame(self, size: tuple[int, ...], named: str) -> None:
        """The networks take an H×W frame (`named` says where the size comes from), else a ValueError."""
        (h, w), gp = size, self.model_params.generator_params
        for where, p in (("kp_detector_params", self.model_params.kp_detector_params),
                         ("generator_params.dense_motion_params", gp.dense_motion_params)):
            if p is None:
                continue
            sides, grain = pyramid_sides(size, p.scale_factor), 2**p.num_blocks
            if sides[0] % grain or sides[1] % grain:  # the hourglass halves it num_blocks times, then doubles back
                raise ValueError(f"model_params.{where}: a {h}×{w} frame ({named}) at scale_factor "
                                 f"{p.scale_factor:g} is {sides[0]}×{sides[1]}, not a multiple of 2**num_blocks = "
                                 f"{grain} in both sides: its hourglass cannot halve it and double it back")
        kp = self.model_params.kp_detector_params
        side = min(pyramid_sides(size, kp.scale_factor))
        if side + 2 * kp.pad < 7:  # the keypoint head is a 7×7 convolution, padded by pad
            raise ValueError(f"model_params.kp_detector_params: a {h}×{w} frame ({named}) at scale_factor "
                             f"{kp.scale_factor:g} is {side} pixels across, too small for the 7×7 keypoint head with "
                             f"pad {kp.pad} (needs side + 2·pad ≥ 7)")
        if h % 2**gp.num_down_blocks or w % 2**gp.num_down_blocks:  # the decoder would give a smaller frame
            raise ValueError(f"model_params.generator_params: a {h}×{w} frame ({named}) is not a "
                             f"multiple of 2**num_down_blocks = {2**gp.num_down_blocks} in both sides")

    def check_trainable(self, where: str) -> None:
        """What only a training step needs of the sizes (animation does not run it), else a ConfigError starting with
        `where` ("file.yaml:"): the networks on the training frame (crop_param's window, where there is one), the GAN
        discriminator's input and the perceptual loss's VGG-19 on each pyramid scale."""
        size, tp, dp = self.dataset_params.shape[:2], self.train_params, self.model_params.discriminator_params
        augmentation = self.dataset_params.augmentation_params
        if augmentation.resize_param is not None and augmentation.crop_param is None:  # a batch of unequal pairs
            raise ConfigError(f"{where} dataset_params.augmentation_params: resize_param zooms each pair by a factor "
                              "of its own, so pairs differ in size: it needs a crop_param (the original's RandomCrop, "
                              "as in mgif-256.yaml) to bring them to one size")
        if (crop := augmentation.crop_param) is not None:  # the frames trained on
            size = crop.size
            try:
                self.check_frame(size, "dataset_params.augmentation_params.crop_param.size, the frames trained on")
            except ValueError as err:
                raise ConfigError(f"{where} {err}") from None
        h, w = size
        if tp.loss_weights.generator_gan != 0:  # the discriminator runs, on the training pyramid
            if missing := [s for s in dp.scales if s not in tp.scales]:
                raise ConfigError(f"{where} model_params.discriminator_params: scales {list(dp.scales)} must be among "
                                  f"train_params.scales {list(tp.scales)} (the GAN terms judge that pyramid), not "
                                  f"{missing}")
            for s in dp.scales:
                if not discriminator_fits(pyramid_sides(size, s), dp.num_blocks):
                    raise ConfigError(f"{where} model_params.discriminator_params: a {h}×{w} frame at scale {s:g} is "
                                      f"too small for {dp.num_blocks} blocks (each a 4×4 convolution, all but the last "
                                      "halving it): use fewer num_blocks or a larger frame")
        used = max((i + 1 for i, weight in enumerate(tp.loss_weights.perceptual) if weight), default=0)
        for s in tp.scales:  # VGG-19 pools 2×2 before each of relu2_1 … relu5_1: relu{used}_1 needs 2**(used-1)
            if used > 1 and (side := min(pyramid_sides(size, s))) < 2 ** (used - 1):
                raise ConfigError(f"{where} train_params: a {h}×{w} frame at scale {s:g} is {side} pixels across, "
                                  f"too small for the perceptual loss up to VGG-19's relu{used}_1 (it needs "
                                  f"{2 ** (used - 1)}): drop that scale, or zero loss_weights.perceptual from "
                                  f"relu{used}_1 on")


def load_config(path: str | Path) -> FommConfig:
    """Read a whole original-format (or our) YAML config file."""
    data = read_yaml(path)
    if isinstance(data, dict) and "space" in data and "model_params" not in data:  # it was "unknown key 'metric'"
        raise ConfigError(f"{Path(path).name}: a search space (space, metric, mode, num_samples), not a model config "
                          "(a YAML of model_params, train_params, …, e.g. configs/vox-256.yaml)")
    return build(FommConfig, data, f"{Path(path).name}:")
