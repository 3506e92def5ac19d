"""The flags of `fomm animate`, `fomm export` and the batch job, each declared once with its rule (services.fields)."""

from __future__ import annotations

from dataclasses import dataclass, field

from animate.render import LAYOUTS
from fomm.animator import CROP_MODES
from fomm.config.schema import SUBJECT_KINDS
from fomm.precision import PRECISIONS
from services.fields import check_fields, rule

MAX_SEED = 2**32 - 1  # numpy's and torch's seeds


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """What makes the model: a config and its weights (a checkpoint, or an explicit random init)."""

    config: str = field(metadata=rule("model YAML (e.g. configs/vox-256.yaml)"))
    checkpoint: str | None = field(default=None, metadata=rule("original-format checkpoint (e.g. vox-cpk.pth.tar)"))
    random_init: bool = field(default=False, metadata=rule("no checkpoint: random weights (tests, demos)"))
    seed: int = field(default=0, metadata=rule("seed of a --random-init model", ge=0, le=MAX_SEED))

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class AnimationOptions:
    """How to animate; `fomm animate` and the batch job share these flags."""

    relative: bool = True  # relative motion transfer (Sec. 3.4); --absolute: absolute keypoints
    adapt_movement_scale: bool = field(default=True, metadata=rule(
        "scale motion by the ratio of keypoint hull areas (default on)", flag="--adapt-scale"))
    crop: str | None = field(default=None, metadata=rule(
        "auto: crop on the detected face/person and track it (default for face and body configs when a detector "
        "runs here); center/pad/none: fit the whole frame (default otherwise)", choices=("auto", *CROP_MODES)))
    subject: int | None = field(default=None, metadata=rule(
        "with --crop auto: subject N counted from the left (default largest)", ge=0))
    subject_kind: str | None = field(default=None, metadata=rule(
        "what the frames show, for --crop auto (default: the config's dataset_params.subject_kind, else its data "
        "set's name: vox → face, taichi → person)", choices=SUBJECT_KINDS))
    paste_back: bool = field(default=True, metadata=rule(
        "with --crop auto: blend the result into the full source frame (default on)"))
    smooth: float = field(default=3.0, metadata=rule(
        "one-euro smoothing of driving keypoints and crop box, frames at rest (default 3; 0 off)", ge=0))
    layout: str = field(default="result", metadata=rule("result, or source | driving | result", choices=LAYOUTS))
    device: str = field(default="cpu", metadata=rule("cpu, cuda, cuda:N or mps (default cpu)"))
    batch_size: int = field(default=8, metadata=rule("driving frames per forward pass (default 8)", ge=1,
                                                     le=4096))
    precision: str = field(default="auto", metadata=rule(
        "auto (default: bf16 where the device computes it natively, else fp32), fp32 or bf16", choices=PRECISIONS))

    def __post_init__(self) -> None:
        check_fields(self)
