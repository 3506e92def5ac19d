"""The flags of `fomm animate`, `fomm export` and the batch job, each declared once with its rule (services.fields),
and the helpers that add and check them."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

from fomm.config.schema import CROP_MODES, PRECISIONS, SUBJECT_KINDS
from services import checks
from services.cli import field_flags, field_values
from services.errors import UserError
from services.fields import check_fields, rule
from services.tracking import store_checks

MAX_SEED = 2**32 - 1  # numpy's and torch's seeds
MAX_OUTPUT_SIZE = 8192  # --output-size, H.264 level 6.2
LAYOUTS = ("result", "side-by-side")  # animate.render's output frames


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """What makes the model: a config and its weights (a checkpoint, or an explicit random init); the flags' rules."""

    config: str = field(metadata=rule(
        "model YAML (e.g. configs/vox-256.yaml); a models:/ --checkpoint brings the one registered with it"))
    checkpoint: str | None = field(default=None, metadata=rule(
        "original-format checkpoint (e.g. vox-cpk.pth.tar), or a registered model: models:/NAME/VERSION or @ALIAS"))
    random_init: bool = field(default=False, metadata=rule("no checkpoint: random weights (tests, demos)"))
    seed: int = field(default=0, metadata=rule("seed of a --random-init model", ge=0, le=MAX_SEED))


@dataclass(frozen=True, kw_only=True)
class AnimationOptions:
    """How to animate; `fomm animate` and the batch job share these flags."""

    relative: bool = True  # relative motion transfer (Sec. 3.4); --absolute: absolute keypoints
    adapt_movement_scale: bool = field(default=True, metadata=rule(flag="--adapt-scale"))  # help: add_animation_flags
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


def parse_size(text: str) -> tuple[int, int]:
    """'256' or 'WxH' → (H, W), even numbers (H.264 with 4:2:0 chroma needs them)."""
    try:
        w, h = (int(v) for v in text.lower().split("x")) if "x" in text.lower() else (int(text),) * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or WxH, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"sizes must be positive and even (H.264 4:2:0), got {text!r}")
    if max(w, h) > MAX_OUTPUT_SIZE:
        raise argparse.ArgumentTypeError(f"sizes must be ≤ {MAX_OUTPUT_SIZE} (H.264 level 6.2), got {text!r}")
    return h, w


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that make the model: `fomm animate`, `fomm export` and the batch job."""
    model = field_flags(parser, ModelOptions)  # help, types and ranges: ModelOptions' rules
    model("config")  # required unless a registered model brings its own (registered_weights)
    model("checkpoint")
    model("random_init", action="store_true")
    model("seed")


def add_animation_flags(parser: argparse.ArgumentParser, motion_default: str | None = None) -> None:
    """How to animate: `fomm animate` and the batch job; `check_animation_flags` validates them. `motion_default`:
    --relative/--absolute and --adapt-scale left None when not given, their help naming that default instead."""
    default, said = (True, "on") if motion_default is None else (None, motion_default)
    motion = parser.add_mutually_exclusive_group()
    motion.add_argument("--relative", dest="relative", action="store_true", default=default,
                        help=f"relative motion transfer (Sec. 3.4; default {said})")
    motion.add_argument("--absolute", dest="relative", action="store_false", help="absolute keypoints")
    option = field_flags(parser, AnimationOptions)  # help, choices, types and ranges: AnimationOptions' rules
    option("adapt_movement_scale", action=argparse.BooleanOptionalAction, default=default,
           help=f"scale motion by the ratio of keypoint hull areas (default {said})")
    for f in dataclasses.fields(AnimationOptions)[2:]:  # after `relative` and `adapt_movement_scale`, in their order
        option(f.name, **({"action": argparse.BooleanOptionalAction} if f.type == "bool" else {}))


def registered_weights(args: argparse.Namespace) -> argparse.Namespace:
    """`args` with a registered model's --checkpoint (models:/NAME/VERSION, /latest, @ALIAS) made its file here,
    and the config registered with it (`train --model-name`) as --config where none is given."""
    given = args.checkpoint
    args.checkpoint = store_checks.registered_checkpoint("--checkpoint", given, uri_flag=None)  # no --tracking-uri
    args.config = store_checks.registered_config(args.config, args.checkpoint, given)
    return args


def weights(args: argparse.Namespace) -> dict:
    """The model flags' weights: a checkpoint (a registered model's too), or an explicit --random-init (one line
    otherwise)."""
    if args.checkpoint is None and not args.random_init:
        raise UserError("--checkpoint is required (or pass --random-init for an untrained model)")
    if args.checkpoint is not None and args.random_init:  # which weights were meant is not ours to guess
        raise UserError(f"--random-init with --checkpoint {args.checkpoint}: choose one (trained weights, or random "
                        "ones)")
    registered_weights(args)
    return {"checkpoint": args.checkpoint, "random_init": args.random_init, "seed": args.seed}


def check_model_files(config: str, checkpoint: str | None) -> None:
    """The model flags name files: a config, and a checkpoint unless --random-init."""
    checks.existing_file("--config", config, "a FOMM YAML")
    if checkpoint is not None:
        checks.existing_file("--checkpoint", checkpoint, "a checkpoint file")


def check_animation_flags(args: argparse.Namespace) -> str:
    """The animation flags keep their rules (also when set in Python) and the device is here; returns it."""
    AnimationOptions(**field_values(AnimationOptions, args))
    return checks.device("--device", args.device)
