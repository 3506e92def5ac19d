"""The training objective of Sec. 3.3: loss terms (perceptual pyramid, Eq. 9; equivariance, Eq. 11, 13; LSGAN and
feature matching; our optional keypoint separation prior) and the full models returning them named and weighted."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from fomm.blocks import ImagePyramid
from fomm.config.schema import TrainParams
from fomm.discriminator import MultiScaleDiscriminator
from fomm.generator import OcclusionAwareGenerator
from fomm.geometry import Transform, detach_kp
from fomm.keypoint_detector import KPDetector
from fomm.vgg import Vgg19, default_weights_path


def pyramid_perceptual_loss(vgg: Callable[..., list[Tensor]], pyramid_pred: dict[str, Tensor],
                            pyramid_real: dict[str, Tensor], weights: Sequence[float]) -> Tensor:
    """Eq. 9, Σ_levels Σ_i w_i · mean |F_i(pred) − F_i(real)| (real without gradient); VGG stops at the deepest
    layer with a non-zero weight."""
    total = next(iter(pyramid_pred.values())).new_zeros(())
    used = max((i + 1 for i, w in enumerate(weights) if w != 0), default=0)
    if used == 0:
        return total
    for key, pred in pyramid_pred.items():
        with torch.no_grad():
            real = vgg(pyramid_real[key], num_slices=used)
        total = total + feature_matching_loss(vgg(pred, num_slices=used), real, weights)
    return total


def equivariance_value_loss(kp_driving: Tensor, kp_transformed: Tensor, transform: Transform) -> Tensor:
    """Eq. 11: mean |kp_driving − T(kp of the warped frame)|."""
    return (kp_driving - transform.warp_coordinates(kp_transformed)).abs().mean()


def equivariance_jacobian_loss(jacobian_driving: Tensor, kp_transformed: Tensor, jacobian_transformed: Tensor,
                               transform: Transform) -> Tensor:
    """Eq. 13: mean |I − J_driving⁻¹ · ∇T(kp_transformed) · J_transformed|."""
    composed = torch.matmul(transform.jacobian(kp_transformed), jacobian_transformed)  # B×K×2×2
    value = torch.matmul(torch.inverse(jacobian_driving), composed)
    eye = torch.eye(2, dtype=value.dtype, device=value.device).view(1, 1, 2, 2)
    return (eye - value).abs().mean()


def keypoint_separation_loss(kp: Tensor, sigma: float) -> Tensor:
    """Zhang et al.'s separation prior (CVPR 2018; not in the paper, docs/learning.md): the mean over pairs i ≠ j
    and the batch of exp(−|k_i − k_j|² / 2σ²), 1 when all keypoints coincide, → 0 beyond a few σ.  # kp: B×K×2"""
    k = kp.shape[1]
    if k < 2:
        return kp.new_zeros(())
    d2 = (kp.unsqueeze(2) - kp.unsqueeze(1)).pow(2).sum(-1)  # B×K×K
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=kp.device)
    return torch.exp(-d2 / (2 * sigma**2))[:, off_diagonal].mean()


def generator_gan_loss(prediction_maps: Sequence[Tensor]) -> Tensor:
    """LSGAN generator term: Σ_scales mean (1 − D(pred))²."""
    return sum(((1 - p) ** 2).mean() for p in prediction_maps)  # type: ignore[return-value]


def discriminator_gan_loss(real_maps: Sequence[Tensor], fake_maps: Sequence[Tensor]) -> Tensor:
    """LSGAN discriminator term: Σ_scales mean[(1 − D(real))² + D(fake)²]."""
    return sum(((1 - r) ** 2 + f**2).mean() for r, f in zip(real_maps, fake_maps))  # type: ignore[return-value]


def feature_matching_loss(real_features: Sequence[Tensor], fake_features: Sequence[Tensor],
                          weights: Sequence[float]) -> Tensor:
    """Σ_i w_i · mean |F_i(real) − F_i(pred)| over discriminator blocks (or VGG slices: Eq. 9's terms)."""
    total = fake_features[0].new_zeros(())
    for weight, a, b in zip(weights, real_features, fake_features):
        if weight != 0:
            total = total + weight * (a - b).abs().mean()
    return total


class GeneratorFullModel(nn.Module):
    """kp detector + generator (+ discriminator for the GAN terms) → dict of weighted losses, outputs."""

    def __init__(self, kp_extractor: KPDetector, generator: OcclusionAwareGenerator,
                 discriminator: MultiScaleDiscriminator | None, train_params: TrainParams,
                 vgg: Vgg19 | None = None) -> None:
        super().__init__()
        self.kp_extractor = kp_extractor
        self.generator = generator
        self.discriminator = discriminator
        self.train_params = train_params
        self.weights = train_params.loss_weights
        self.pyramid = ImagePyramid(train_params.scales, generator.num_channels)
        if vgg is None and sum(self.weights.perceptual) != 0:
            vgg = Vgg19(default_weights_path())
        self.vgg = vgg  # no layer of it depends on training mode

    def forward(self, x: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        w = self.weights
        kp_source = self.kp_extractor(x["source"])
        kp_driving = self.kp_extractor(x["driving"])
        generated = self.generator(x["source"], kp_source=kp_source, kp_driving=kp_driving)
        pyramid_real = self.pyramid(x["driving"])
        pyramid_generated = self.pyramid(generated["prediction"])
        # the discriminator's step reuses the keypoints and both pyramids (the generated one detached there)
        generated.update({"kp_source": kp_source, "kp_driving": kp_driving, "pyramid_real": pyramid_real,
                          "pyramid_generated": pyramid_generated})
        losses: dict[str, Tensor] = {}
        if sum(w.perceptual) != 0:
            losses["perceptual"] = pyramid_perceptual_loss(self.vgg, pyramid_generated, pyramid_real, w.perceptual)
        if w.generator_gan != 0:
            if self.discriminator is None:
                raise ValueError("generator_gan ≠ 0 needs a discriminator")
            kp_detached = detach_kp(kp_driving)
            maps_generated = self.discriminator(pyramid_generated, kp=kp_detached)
            maps_real = self.discriminator(pyramid_real, kp=kp_detached)
            losses["gen_gan"] = w.generator_gan * generator_gan_loss(
                [maps_generated[f"prediction_map_{s}"] for s in self.discriminator.scales])
            if sum(w.feature_matching) != 0:
                losses["feature_matching"] = sum(
                    feature_matching_loss(maps_real[f"feature_maps_{s}"], maps_generated[f"feature_maps_{s}"],
                                          w.feature_matching)
                    for s in self.discriminator.scales)
        if w.keypoint_separation != 0:
            losses["keypoint_separation"] = w.keypoint_separation * 0.5 * (
                keypoint_separation_loss(kp_source["value"], w.keypoint_separation_sigma)
                + keypoint_separation_loss(kp_driving["value"], w.keypoint_separation_sigma))
        if w.equivariance_value + w.equivariance_jacobian != 0:
            tp = self.train_params.transform_params
            transform = Transform(x["driving"].shape[0], tp.sigma_affine, tp.sigma_tps, tp.points_tps)
            transformed_kp = self.kp_extractor(transform.transform_frame(x["driving"], self.generator.align_corners))
            if w.equivariance_value != 0:
                losses["equivariance_value"] = w.equivariance_value * equivariance_value_loss(
                    kp_driving["value"], transformed_kp["value"], transform)
            if w.equivariance_jacobian != 0 and "jacobian" in kp_driving:
                losses["equivariance_jacobian"] = w.equivariance_jacobian * equivariance_jacobian_loss(
                    kp_driving["jacobian"], transformed_kp["value"], transformed_kp["jacobian"], transform)
        return losses, generated


class DiscriminatorFullModel(nn.Module):
    """Discriminator LSGAN loss on the real driving frame and the detached prediction, on the pyramids the
    generator's step made (`generated`: GeneratorFullModel's outputs)."""

    def __init__(self, discriminator: MultiScaleDiscriminator, train_params: TrainParams) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.train_params = train_params

    def forward(self, x: dict[str, Tensor], generated: dict[str, Tensor]) -> dict[str, Tensor]:
        pyramid_generated = {k: v.detach() for k, v in generated["pyramid_generated"].items()}
        kp = detach_kp(generated["kp_driving"])
        maps_generated = self.discriminator(pyramid_generated, kp=kp)
        maps_real = self.discriminator(generated["pyramid_real"], kp=kp)
        scales = self.discriminator.scales
        value = discriminator_gan_loss([maps_real[f"prediction_map_{s}"] for s in scales],
                                       [maps_generated[f"prediction_map_{s}"] for s in scales])
        return {"disc_gan": self.train_params.loss_weights.discriminator_gan * value}


def total_loss(losses: dict[str, Tensor]) -> Tensor:
    return torch.stack([v.mean() for v in losses.values()]).sum()
