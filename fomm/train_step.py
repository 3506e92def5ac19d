"""Single-device training state and step: per-module Adam, multi-step LR, the original update order (Sec. 3.3)."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fomm.checkpoint import CheckpointError, checkpoint_bytes, load_parts, read_checkpoint
from fomm.config.model_params import ModelConfig
from fomm.config.schema import TrainParams
from fomm.discriminator import MultiScaleDiscriminator
from fomm.generator import OcclusionAwareGenerator
from fomm.keypoint_detector import KPDetector
from fomm.losses import DiscriminatorFullModel, GeneratorFullModel, total_loss
from fomm.models import build_networks
from fomm.precision import autocast
from fomm.vgg import Vgg19

BETAS = (0.5, 0.999)


@dataclass
class TrainState:
    """Networks, their full models, optimisers and schedulers, and progress counters."""

    kp_detector: KPDetector
    generator: OcclusionAwareGenerator
    discriminator: MultiScaleDiscriminator
    generator_full: nn.Module
    discriminator_full: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.MultiStepLR]
    train_params: TrainParams
    epoch: int = 0
    step: int = 0
    batch_norm_frozen: bool = False  # train_params.freeze_batch_norm_epoch reached (see train_step)

    @property
    def use_gan(self) -> bool:
        return self.train_params.loss_weights.generator_gan != 0

    def learning_rates(self) -> dict[str, float]:
        return {f"lr_{name}": opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}

    def scale_learning_rates(self, factor: float) -> None:
        """Set every optimiser's rate to its config value × factor (a schedule other than the epochs')."""
        for name, optimizer in self.optimizers.items():
            base = self.schedulers[name].base_lrs[0]
            for group in optimizer.param_groups:
                group["lr"] = base * factor

    def _parts(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        """The networks and optimisers under the original checkpoint format's names."""
        return {"generator": self.generator, "kp_detector": self.kp_detector, "discriminator": self.discriminator,
                **{f"optimizer_{name}": optimizer for name, optimizer in self.optimizers.items()}}

    def to_bytes(self) -> bytes:
        """The original checkpoint format (plus the step), for the caller to write."""
        return checkpoint_bytes(**self._parts(), epoch=self.epoch, extra={"step": self.step})

    def load(self, path: str | Path) -> None:
        """Restore weights, optimisers and the epoch; schedulers are re-aligned to the epoch."""
        state = read_checkpoint(path)  # one torch.load: a checkpoint can be hundreds of MB
        self.epoch = load_parts(state, path, **self._parts())
        self.step = int(state.get("step", 0))
        for scheduler in self.schedulers.values():
            # a fresh scheduler has last_epoch 0 and end_epoch() steps it once per epoch, so after `epoch`
            # finished epochs it is at `epoch` (epoch - 1 would apply a milestone at `epoch` a second time)
            scheduler.last_epoch = self.epoch
        self.scale_learning_rates(0.1 ** sum(1 for m in self.train_params.epoch_milestones if m <= self.epoch))


def start_from(state: dict[str, Any], path: str | Path, generator: nn.Module, kp_detector: nn.Module,
               discriminator: nn.Module) -> str | None:
    """Fine-tuning: load a checkpoint's (read from `path`) generator and kp detector, and its discriminator where it
    has one that fits (another GAN setting, e.g. vox-cpk under vox-adv-256.yaml, starts it anew); optimisers, epoch
    and step are not taken. Returns why the discriminator was not taken (None: it was)."""
    load_parts(state, path, generator=generator, kp_detector=kp_detector)
    try:
        load_parts(state, path, discriminator=discriminator)
    except CheckpointError as err:
        return str(err)
    return None


def build_train_state(model_cfg: ModelConfig, train_params: TrainParams, vgg: Vgg19 | None = None,
                      device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> TrainState:
    """Networks and optimisers from the config (`vgg`: GeneratorFullModel's default unless given); `dtype`: of
    every parameter, the VGG's too (float64: results that agree across CPUs, for tests)."""
    nets = build_networks(model_cfg, discriminator=True, device=device)
    # the discriminator joins the generator's full model only for the GAN terms: otherwise its parameters
    # would sit unused in there (DDP would wait for their gradients)
    use_gan = train_params.loss_weights.generator_gan != 0
    generator_full = GeneratorFullModel(nets.kp_detector, nets.generator, nets.discriminator if use_gan else None,
                                        train_params, vgg=vgg).to(device, dtype)
    discriminator_full = DiscriminatorFullModel(nets.discriminator, train_params).to(device, dtype)
    fused = torch.device(device).type in ("cpu", "cuda")  # one kernel over all parameters, not a loop per tensor
    optimizers = {name: torch.optim.Adam(net.parameters(), lr=getattr(train_params, f"lr_{name}"), betas=BETAS,
                                         fused=fused) for name, net in vars(nets).items()}
    schedulers = {name: torch.optim.lr_scheduler.MultiStepLR(opt, list(train_params.epoch_milestones), gamma=0.1)
                  for name, opt in optimizers.items()}
    return TrainState(**vars(nets), generator_full=generator_full, discriminator_full=discriminator_full,
                      optimizers=optimizers, schedulers=schedulers, train_params=train_params)


def to_channels_last(state: TrainState) -> None:
    """Every convolutional network of a step in channels_last memory, the perceptual loss's VGG included."""
    vgg = getattr(state.generator_full, "vgg", None)
    for module in (state.kp_detector, state.generator, state.discriminator, vgg):
        if module is not None:
            module.to(memory_format=torch.channels_last)


def train_step(state: TrainState, batch: dict[str, Tensor],
               generator_full: nn.Module | None = None, discriminator_full: nn.Module | None = None,
               autocast_dtype: torch.dtype | None = None) -> tuple[dict[str, float], dict[str, Tensor]]:
    """One update in the original order: generator + kp detector on their losses, then the discriminator;
    `generator_full` / `discriminator_full` override the state's modules (e.g. DDP-wrapped ones)."""
    generator_full = generator_full or state.generator_full
    discriminator_full = discriminator_full or state.discriminator_full
    device = batch["source"].device
    if state.batch_norm_frozen:  # again each step: validation puts whole modules back into training mode
        for layer in [*state.kp_detector.modules(), *state.generator.modules()]:
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.eval()  # running statistics, not updated; the weights still train
    with autocast(autocast_dtype, device):
        losses, generated = generator_full(batch)
        loss = total_loss(losses)
    loss.backward()
    for name in ("generator", "kp_detector"):
        state.optimizers[name].step()
        state.optimizers[name].zero_grad(set_to_none=True)
    values = {k: float(v.detach().mean()) for k, v in losses.items()}
    if state.use_gan:
        state.optimizers["discriminator"].zero_grad(set_to_none=True)
        with autocast(autocast_dtype, device):
            disc_losses = discriminator_full(batch, generated)
            disc_loss = total_loss(disc_losses)
        disc_loss.backward()
        state.optimizers["discriminator"].step()
        state.optimizers["discriminator"].zero_grad(set_to_none=True)
        values.update({k: float(v.detach().mean()) for k, v in disc_losses.items()})
    values["total"] = float(loss.detach())
    state.step += 1
    return values, generated


def end_epoch(state: TrainState) -> None:
    """Advance the learning-rate schedules and the epoch counter."""
    with warnings.catch_warnings():
        # the discriminator's optimiser never steps in non-adversarial configs; its schedule still advances
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
        for scheduler in state.schedulers.values():
            scheduler.step()
    state.epoch += 1
