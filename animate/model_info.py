"""`fomm info`: parameter counts of a config's networks and whether a checkpoint's state dicts fit them."""

from __future__ import annotations

from pathlib import Path

from fomm.checkpoint import CheckpointError, load_state, read_checkpoint
from fomm.config import load_config
from fomm.discriminator import MultiScaleDiscriminator
from fomm.generator import OcclusionAwareGenerator
from fomm.keypoint_detector import KPDetector


def model_info(config: str | Path, checkpoint: str | Path | None = None) -> dict:
    """Parameter counts per network and, with a checkpoint, whether each of its state dicts fits the config."""
    cfg = load_config(config)
    nets = {"kp_detector": KPDetector.from_config(cfg.model_params),
            "generator": OcclusionAwareGenerator.from_config(cfg.model_params),
            "discriminator": MultiScaleDiscriminator.from_config(cfg.model_params)}
    info: dict = {"config": str(config), "frame_shape": list(cfg.dataset_params.shape),
                  "num_kp": cfg.model_params.common_params.num_kp,
                  "parameters": {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}}
    info["parameters"]["total"] = sum(info["parameters"].values())
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)
        fit = {}
        for name, net in nets.items():
            if name not in state:
                fit[name] = "absent"
                continue
            try:
                load_state(net, state[name], checkpoint, name)
                fit[name] = "ok"
            except CheckpointError as err:
                fit[name] = str(err)
        info.update(checkpoint=str(checkpoint), epoch=int(state.get("epoch", 0)), fits=fit,
                    ok=all(v in ("ok", "absent") for v in fit.values()) and fit.get("generator") == "ok"
                    and fit.get("kp_detector") == "ok")
    return info
