"""Networks and losses as one module each, returning named, weighted loss terms (Sec. 3.3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fomm.config.schema import TrainParams
from fomm.discriminator import MultiScaleDiscriminator
from fomm.generator import OcclusionAwareGenerator
from fomm.geometry import detach_kp
from fomm.keypoint_detector import KPDetector
from fomm.losses import (
    discriminator_gan_loss,
    equivariance_jacobian_loss,
    equivariance_value_loss,
    feature_matching_loss,
    generator_gan_loss,
    keypoint_separation_loss,
    pyramid_perceptual_loss,
)
from fomm.pyramid import ImagePyramid
from fomm.tps import Transform
from fomm.vgg import Vgg19, default_weights_path


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
            transformed_frame = transform.transform_frame(x["driving"], self.generator.align_corners)
            transformed_kp = self.kp_extractor(transformed_frame)
            generated["transformed_frame"] = transformed_frame
            generated["transformed_kp"] = transformed_kp
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
        pyramid_real = generated["pyramid_real"]
        pyramid_generated = {k: v.detach() for k, v in generated["pyramid_generated"].items()}
        kp = detach_kp(generated["kp_driving"])
        maps_generated = self.discriminator(pyramid_generated, kp=kp)
        maps_real = self.discriminator(pyramid_real, kp=kp)
        scales = self.discriminator.scales
        value = discriminator_gan_loss([maps_real[f"prediction_map_{s}"] for s in scales],
                                       [maps_generated[f"prediction_map_{s}"] for s in scales])
        return {"disc_gan": self.train_params.loss_weights.discriminator_gan * value}


def total_loss(losses: dict[str, Tensor]) -> Tensor:
    return torch.stack([v.mean() for v in losses.values()]).sum()
