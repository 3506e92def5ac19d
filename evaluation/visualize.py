"""Pictures of reconstructions: real | generated | difference, strips, GIFs, and the training grid."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from fomm.config.loader import ConfigError
from fomm.config.schema import VisualizerParams
from fomm.visualization import draw_keypoints
from services.atomic import atomic_path
from services.cli import user_input
from services.video_write import write_video


def matplotlib_module():  # noqa: ANN201 - the matplotlib module
    """matplotlib, quiet where its config folder cannot be made (a container's user without a writable home): it
    printed two warning lines on every command; its cache then goes to a temporary folder, removed at exit."""
    if "MPLCONFIGDIR" not in os.environ and "matplotlib" not in sys.modules:
        try:
            folder = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "matplotlib"
            folder.mkdir(parents=True, exist_ok=True)
            usable = os.access(folder, os.W_OK)
        except (OSError, RuntimeError):  # RuntimeError: no home at all
            usable = False
        if not usable:
            os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="matplotlib-")
            atexit.register(shutil.rmtree, os.environ["MPLCONFIGDIR"], ignore_errors=True)
    import matplotlib

    return matplotlib


@functools.lru_cache(maxsize=16)
def colormap_colors(name: str, num_kp: int) -> np.ndarray:
    """Keypoint k of K in matplotlib colormap `name`'s colour at k / K, as the original drew them; computed once
    per (name, K), not per drawn frame (a lookup costs ~1 ms), so read-only.  # K×3 uint8"""
    matplotlib = matplotlib_module()
    if name not in matplotlib.colormaps:
        raise ConfigError(f"visualizer_params.colormap: unknown colormap {name!r} (expected a matplotlib colormap, "
                          "e.g. gist_rainbow)")
    colors = np.round(matplotlib.colormaps[name](np.arange(num_kp) / num_kp)[:, :3] * 255).astype(np.uint8)
    colors.flags.writeable = False
    return colors


def check_colormap(config: str | Path, style: VisualizerParams) -> None:
    """A config's colormap is one matplotlib knows (the original's Visualizer fails on any other as well)."""
    with user_input(f"--config {config}"):
        colormap_colors(style.colormap, 1)


def draw_styled_kp(image: np.ndarray, kp: np.ndarray, style: VisualizerParams, scale: float = 1.0) -> np.ndarray:
    """Keypoints (K×2 in [-1, 1]) on an H×W×3 uint8 image as a config's visualizer_params say: discs of kp_size
    pixels on the model's frames (`scale`: the image's size over theirs), colours of its colormap."""
    return draw_keypoints(image, kp, colormap_colors(style.colormap, len(kp)), style.kp_size * scale)


def side_by_side(real: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """Videos T×H×W×3 → T×H×3W×3: real | generated | mean |difference| over channels ×4, in grey."""
    if real.shape != generated.shape:
        raise ValueError(f"side_by_side: shapes differ: {real.shape} vs {generated.shape}")
    diff = np.abs(real.astype(np.int16) - generated.astype(np.int16)).mean(axis=-1)
    grey = np.clip(diff * 4, 0, 255).astype(np.uint8)
    return np.concatenate([real, generated, np.repeat(grey[..., None], 3, axis=-1)], axis=2)


def strip(frames: np.ndarray, n: int = 6) -> np.ndarray:
    """n evenly spaced frames of a T×H×W×3 video side by side.  # H×(n·W)×3"""
    idx = np.unique(np.linspace(0, len(frames) - 1, num=min(n, len(frames))).round().astype(int))
    return np.concatenate(list(frames[idx]), axis=1)


def write_gif(frames: np.ndarray, path: str | Path, fps: float = 10.0, scale: int = 1) -> Path:
    """An animated GIF (looping) of T×H×W×3 uint8 frames (nearest-neighbour upscaled by `scale`), written atomically."""
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    return write_video(path, frames, fps)


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """An H×W×3 uint8 image as PNG, written atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return Path(path)


def _to_images(x) -> np.ndarray:  # noqa: ANN001 - a torch tensor B×C×H×W in [0, 1]
    x = x.detach().float().clamp(0, 1).cpu()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # B×H×W×3


def training_grid(source, driving, generated: dict, kp_source: dict, kp_driving: dict,  # noqa: ANN001
                  style: VisualizerParams | None = None) -> np.ndarray:
    """Rows of source+kp | driving+kp | deformed | occlusion | prediction (those generated) → H'×W'×3 uint8; `style`:
    the config's visualizer_params (draw_border: a white frame round each picture)."""
    import torch.nn.functional as F

    style = style or VisualizerParams()
    src, drv, pred = _to_images(source), _to_images(driving), _to_images(generated["prediction"])
    h, w = src.shape[1:3]
    kp_s, kp_d = (kp["value"].detach().float().cpu().numpy() for kp in (kp_source, kp_driving))  # bf16 → float
    columns = [np.stack([draw_styled_kp(s, k, style) for s, k in zip(src, kp_s)]),
               np.stack([draw_styled_kp(d, k, style) for d, k in zip(drv, kp_d)])]
    if "deformed" in generated:
        columns.append(_to_images(generated["deformed"]))
    if "occlusion_map" in generated:
        columns.append(_to_images(F.interpolate(generated["occlusion_map"].float(), size=(h, w), mode="bilinear",
                                                align_corners=False)))
    columns.append(pred)
    if style.draw_border:
        for pictures in columns:  # B×H×W×3 each
            pictures[:, [0, -1]] = pictures[:, :, [0, -1]] = 255
    rows = [np.concatenate([c[i] for c in columns], axis=1) for i in range(min(4, len(src)))]  # at most 4 rows
    return np.concatenate(rows, axis=0)
