"""The `model_params` sections of an original FOMM YAML file, typed, and the sizes their networks give a frame
(the anti-aliased pyramid, the GAN discriminator's blocks): what `FommConfig`'s size rules are made of."""

from __future__ import annotations

import math
from dataclasses import field
from typing import ClassVar

from fomm.config.loader import Section, section

MAX_DEPTH = 16  # halvings of a frame (2**16 = 65536 pixels across)
MAX_BOTTLENECK = 1024  # residual blocks at the generator's bottleneck (the original's 6)


@section
class CommonParams(Section):
    num_kp: int = 10
    num_channels: int = 3
    estimate_jacobian: bool = True
    # every warp's sampling convention. False: PyTorch's default, the original checkpoints'. True: ±1 are the corner
    # pixels' centres, as in make_coordinate_grid, so identity motion reproduces the source exactly
    align_corners: bool = False
    positive: ClassVar = ("num_kp", "num_channels")


@section
class KPDetectorParams(Section):
    temperature: float = 0.1
    block_expansion: int = 32
    max_features: int = 1024
    scale_factor: float = 0.25
    num_blocks: int = 5
    single_jacobian_map: bool = False
    pad: int = 0
    positive: ClassVar = ("temperature", "block_expansion", "max_features", "scale_factor", "num_blocks")
    non_negative: ClassVar = ("pad",)
    at_most: ClassVar = {"num_blocks": MAX_DEPTH}
    downscales: ClassVar = ("scale_factor",)


@section
class DenseMotionParams(Section):
    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01
    positive: ClassVar = ("block_expansion", "max_features", "num_blocks", "scale_factor", "kp_variance")
    downscales: ClassVar = ("scale_factor",)
    at_most: ClassVar = {"num_blocks": MAX_DEPTH}


@section
class GeneratorParams(Section):
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    estimate_occlusion_map: bool = True
    dense_motion_params: DenseMotionParams | None = field(default_factory=DenseMotionParams)
    positive: ClassVar = ("block_expansion", "max_features")
    non_negative: ClassVar = ("num_down_blocks", "num_bottleneck_blocks")
    at_most: ClassVar = {"num_down_blocks": MAX_DEPTH, "num_bottleneck_blocks": MAX_BOTTLENECK}


@section
class DiscriminatorParams(Section):
    scales: tuple[float, ...] = (1,)
    block_expansion: int = 32
    max_features: int = 512
    num_blocks: int = 4
    sn: bool = False
    use_kp: bool = False
    kp_variance: float = 0.01
    positive: ClassVar = ("block_expansion", "max_features", "num_blocks", "kp_variance")
    downscales: ClassVar = ("scales",)
    at_most: ClassVar = {"num_blocks": MAX_DEPTH}


@section
class ModelConfig(Section):
    """`model_params` of an original FOMM YAML file."""

    common_params: CommonParams = field(default_factory=CommonParams)
    kp_detector_params: KPDetectorParams = field(default_factory=KPDetectorParams)
    generator_params: GeneratorParams = field(default_factory=GeneratorParams)
    discriminator_params: DiscriminatorParams = field(default_factory=DiscriminatorParams)

    def __post_init__(self) -> None:
        Section.__post_init__(self)
        gp = self.generator_params
        for where, p in (("kp_detector_params", self.kp_detector_params), ("generator_params", gp),
                         ("generator_params.dense_motion_params", gp.dense_motion_params)):
            if p is not None and p.block_expansion > p.max_features:  # widths are min(max_features, b·2**i)
                raise ValueError(f"{where}: block_expansion {p.block_expansion} is above max_features "
                                 f"{p.max_features} (the widths are min(max_features, block_expansion·2**i): its "
                                 "blocks would not fit together)")


def pyramid_sides(size: tuple[int, ...], scale: float) -> tuple[int, int]:
    """An H×W frame's sides after the anti-aliased downscale by `scale` (pyramid_side)."""
    return pyramid_side(size[0], scale), pyramid_side(size[1], scale)


def pyramid_side(size: int, scale: float) -> int:
    """A side after the anti-aliased downscale (fomm.blocks.AntiAliasInterpolation2d): ceil(size·scale) by a strided
    blur when 1/scale is whole, else interpolate's floor(size·scale)."""
    inverse = 1 / scale
    return -(-size // round(inverse)) if math.isclose(inverse, round(inverse)) else math.floor(size * scale)


def discriminator_fits(sides: tuple[int, int], num_blocks: int) -> bool:
    """Whether an h×w picture passes the discriminator's blocks in training: each an unpadded 4×4 convolution
    (sides − 3), instance norm after the first (more than one pixel), and a 2×2 average pool in all but the last."""
    for block in range(num_blocks):
        sides = tuple(n - 3 for n in sides)
        pool = block < num_blocks - 1
        if min(sides) < 1 + pool or (block > 0 and sides[0] * sides[1] < 2):
            return False
        sides = tuple(n // 2 for n in sides) if pool else sides
    return True
