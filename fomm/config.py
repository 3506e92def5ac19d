"""Typed configs mirroring the sections of the original FOMM YAML files (which load unchanged)."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or section that does not fit the schema; the message names the file and the key."""


def _build(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass `cls` from a mapping, rejecting unknown keys with a message naming `where`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {}
    defaults = {f.name: f.default for f in fields(cls)}
    for name, value in data.items():
        hint = hints[name]
        sub = _dataclass_of(hint)
        if value is None and defaults[name] is None:
            kwargs[name] = None  # an optional section left out (e.g. dense_motion_params, crop_param)
        elif sub is not None and (isinstance(value, dict) or value is None):
            kwargs[name] = _build(sub, value, f"{where} {name}" if where.endswith(":") else f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def _dataclass_of(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in getattr(hint, "__args__", ()):  # Optional[X] / X | None
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_dict(v) for k, v in obj.items()}
    return obj


class _Section:
    """Mixin: `from_dict` / `to_dict` for a config section."""

    @classmethod
    def from_dict(cls, data: dict | None, where: str | None = None):
        return _build(cls, data, where or cls.__name__)

    def to_dict(self) -> dict:
        return _to_dict(self)


def _positive(where: str, **values: float) -> None:
    for name, value in values.items():
        if value is None or value <= 0:
            raise ValueError(f"{name} must be positive, got {value!r} ({where})")


# ---------------------------------------------------------------- model_params


@dataclass(frozen=True, kw_only=True, slots=True)
class CommonParams(_Section):
    num_kp: int = 10
    num_channels: int = 3
    estimate_jacobian: bool = True
    # Sampling convention of every warp (grid_sample, resized motion fields). False: PyTorch's default, that of the
    # original checkpoints. True: ±1 are the centres of the corner pixels, as in make_coordinate_grid, so identity
    # motion reproduces the source exactly (with False it shrinks the image by (n-1)/n and darkens the border).
    align_corners: bool = False

    def __post_init__(self) -> None:
        _positive("common_params", num_kp=self.num_kp, num_channels=self.num_channels)


@dataclass(frozen=True, kw_only=True, slots=True)
class KPDetectorParams(_Section):
    temperature: float = 0.1
    block_expansion: int = 32
    max_features: int = 1024
    scale_factor: float = 0.25
    num_blocks: int = 5
    single_jacobian_map: bool = False
    pad: int = 0

    def __post_init__(self) -> None:
        _positive("kp_detector_params", temperature=self.temperature, block_expansion=self.block_expansion,
                  max_features=self.max_features, scale_factor=self.scale_factor, num_blocks=self.num_blocks)


@dataclass(frozen=True, kw_only=True, slots=True)
class DenseMotionParams(_Section):
    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01

    def __post_init__(self) -> None:
        _positive("dense_motion_params", block_expansion=self.block_expansion, max_features=self.max_features,
                  num_blocks=self.num_blocks, scale_factor=self.scale_factor, kp_variance=self.kp_variance)


@dataclass(frozen=True, kw_only=True, slots=True)
class GeneratorParams(_Section):
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    estimate_occlusion_map: bool = True
    dense_motion_params: DenseMotionParams | None = field(default_factory=DenseMotionParams)


@dataclass(frozen=True, kw_only=True, slots=True)
class DiscriminatorParams(_Section):
    scales: tuple[float, ...] = (1,)
    block_expansion: int = 32
    max_features: int = 512
    num_blocks: int = 4
    sn: bool = False
    use_kp: bool = False
    kp_variance: float = 0.01


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelConfig(_Section):
    """`model_params` of an original FOMM YAML file."""

    common_params: CommonParams = field(default_factory=CommonParams)
    kp_detector_params: KPDetectorParams = field(default_factory=KPDetectorParams)
    generator_params: GeneratorParams = field(default_factory=GeneratorParams)
    discriminator_params: DiscriminatorParams = field(default_factory=DiscriminatorParams)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ModelConfig:
        return FommConfig.from_yaml(path).model_params


# ---------------------------------------------------------------- train_params


@dataclass(frozen=True, kw_only=True, slots=True)
class TransformParams(_Section):
    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5


@dataclass(frozen=True, kw_only=True, slots=True)
class LossWeights(_Section):
    generator_gan: float = 0.0
    discriminator_gan: float = 1.0
    feature_matching: tuple[float, ...] = (10, 10, 10, 10)
    perceptual: tuple[float, ...] = (10, 10, 10, 10, 10)
    equivariance_value: float = 10.0
    equivariance_jacobian: float = 10.0
    # our addition (0: the original losses): weight of the keypoint separation prior on the source and driving
    # keypoints, fomm.losses.keypoint_separation_loss with σ = keypoint_separation_sigma (keypoint units, [-1, 1])
    keypoint_separation: float = 0.0
    keypoint_separation_sigma: float = 0.1

    def __post_init__(self) -> None:
        _positive("train_params.loss_weights", keypoint_separation_sigma=self.keypoint_separation_sigma)
        if len(self.perceptual) != 5:
            raise ValueError(f"perceptual needs 5 weights (VGG-19 relu1_1..relu5_1), got {len(self.perceptual)}")


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainParams(_Section):
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
    # from this epoch on (with a budget schedule: at this fraction of the budget, epoch / num_epochs) the batch
    # norm layers of the kp detector and generator normalise with their running statistics and stop updating
    # them, while their weights train on: small batches' statistics then stop shifting each image's colours
    freeze_batch_norm_epoch: int | None = None

    def __post_init__(self) -> None:
        for name in ("bf16", "channels_last"):
            if getattr(self, name) not in (True, False, "auto"):
                raise ValueError(f"{name} must be true, false or auto, got {getattr(self, name)!r}")
        first_decay = min(self.epoch_milestones, default=None)
        if self.freeze_batch_norm_epoch is not None and (first_decay is None or self.freeze_batch_norm_epoch < first_decay):
            warnings.warn(f"train_params.freeze_batch_norm_epoch {self.freeze_batch_norm_epoch} comes before the first "
                          f"learning-rate decay (epoch_milestones {list(self.epoch_milestones)}): at the full rate, "
                          "frozen batch norm diverged in our trials; freeze at or after a decay", stacklevel=2)


# ---------------------------------------------------------------- other sections


@dataclass(frozen=True, kw_only=True, slots=True)
class FlipParams(_Section):
    horizontal_flip: bool = False
    time_flip: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class JitterParams(_Section):
    """Colour jitter strengths; a key absent from the file means no jitter of that kind."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class CropParams(_Section):
    size: tuple[int, ...] = (256, 256)


@dataclass(frozen=True, kw_only=True, slots=True)
class ResizeParams(_Section):
    ratio: tuple[float, ...] = (0.9, 1.1)


@dataclass(frozen=True, kw_only=True, slots=True)
class AugmentationParams(_Section):
    flip_param: FlipParams | None = None
    jitter_param: JitterParams | None = None
    crop_param: CropParams | None = None
    resize_param: ResizeParams | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class DatasetParams(_Section):
    root_dir: str = ""
    frame_shape: tuple[int, ...] = (256, 256, 3)
    image_shape: tuple[int, ...] | None = None  # older original files spell frame_shape so
    id_sampling: bool = False
    pairs_list: str | None = None
    augmentation_params: AugmentationParams = field(default_factory=AugmentationParams)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.image_shape or self.frame_shape


@dataclass(frozen=True, kw_only=True, slots=True)
class ReconstructionParams(_Section):
    num_videos: int | None = 1000
    format: str = ".mp4"


@dataclass(frozen=True, kw_only=True, slots=True)
class NormalizationParams(_Section):
    adapt_movement_scale: bool = False
    use_relative_movement: bool = True
    use_relative_jacobian: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class AnimateParams(_Section):
    num_pairs: int = 50
    format: str = ".mp4"
    normalization_params: NormalizationParams = field(default_factory=NormalizationParams)


@dataclass(frozen=True, kw_only=True, slots=True)
class VisualizerParams(_Section):
    kp_size: int = 5
    draw_border: bool = True
    colormap: str = "gist_rainbow"


@dataclass(frozen=True, kw_only=True, slots=True)
class FommConfig(_Section):
    """A whole original-format config file: every section, typed."""

    dataset_params: DatasetParams = field(default_factory=DatasetParams)
    model_params: ModelConfig = field(default_factory=ModelConfig)
    train_params: TrainParams = field(default_factory=TrainParams)
    reconstruction_params: ReconstructionParams = field(default_factory=ReconstructionParams)
    animate_params: AnimateParams = field(default_factory=AnimateParams)
    visualizer_params: VisualizerParams = field(default_factory=VisualizerParams)
    prediction_params: dict | None = None  # the original's optional 'prediction' module (unused here)

    @property
    def model(self) -> ModelConfig:
        return self.model_params

    @property
    def train(self) -> TrainParams:
        return self.train_params

    @classmethod
    def from_yaml(cls, path: str | Path) -> FommConfig:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config ({err.strerror or err})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        return cls.from_dict(data, where=f"{path.name}:")

    def to_yaml(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        tmp.replace(path)


def load_config(path: str | Path) -> FommConfig:
    """Read a whole original-format (or our) YAML config file."""
    return FommConfig.from_yaml(path)
