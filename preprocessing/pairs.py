"""Training samples: source/driving frame pairs, epochs with num_repeats and id sampling, paired augmentation.

Numpy only. As in the original FOMM training: two frames of one video drawn uniformly with replacement and
sorted in time (the earlier is the source); an epoch visits every video `num_repeats` times, or with
`id_sampling` every person id, each visit taking one of that person's videos at random; augmentation
(horizontal flip, time flip, colour jitter) is drawn once and applied identically to both frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fomm.config.schema import AugmentationParams
from fomm.visualization import hsv_to_rgb


def sample_pair(num_frames: int, rng: np.random.Generator) -> tuple[int, int]:
    """(i_source, i_driving): two frame indices uniform with replacement, sorted in time."""
    if num_frames < 1:
        raise ValueError(f"cannot sample a frame pair from a clip of {num_frames} frames")
    i, j = np.sort(rng.choice(num_frames, size=2, replace=True))
    return int(i), int(j)


def _gray(img: np.ndarray) -> np.ndarray:
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114  # ITU-R 601, as torchvision


def _shift_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue of an H×W×3 float image in [0, 1] by `shift` turns (RGB → HSV → RGB)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    v = img.max(-1)
    c = v - img.min(-1)
    s = np.where(v > 0, c / np.maximum(v, 1e-12), 0.0)
    safe = np.maximum(c, 1e-12)
    h = np.where(v == r, ((g - b) / safe) % 6.0, np.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = np.where(c > 0, h / 6.0, 0.0)
    return hsv_to_rgb((h + shift) % 1.0, s, v)


def jitter_colour(img: np.ndarray, factors: dict[str, float], order: Sequence[str]) -> np.ndarray:
    """Apply brightness/contrast/saturation (multiplicative factors) and hue (a shift in turns) in `order`."""
    out = img
    for name in order:
        f = factors[name]
        if name == "brightness":
            out = out * f
        elif name == "contrast":
            out = (out - _gray(out).mean()) * f + _gray(out).mean()
        elif name == "saturation":
            gray = _gray(out)[..., None]
            out = (out - gray) * f + gray
        elif name == "hue":
            out = _shift_hue(np.clip(out, 0.0, 1.0), f)
        out = np.clip(out, 0.0, 1.0)
    return out


def augment_pair(source: np.ndarray, driving: np.ndarray, rng: np.random.Generator,
                 params: AugmentationParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Augment an H×W×3 frame pair (uint8 or [0, 1] floats) alike by the config's augmentation_params (None: none)."""
    params = params or AugmentationParams()
    frames = [source, driving]
    if params.flips.time_flip and rng.random() < 0.5:  # time flip: the later frame becomes the source
        frames = frames[::-1]
    if params.flips.horizontal_flip and rng.random() < 0.5:
        frames = [f[:, ::-1] for f in frames]
    ranges = params.jitter
    active = [k for k, v in ranges.items() if v > 0]
    if not active:
        return tuple(np.ascontiguousarray(f) for f in frames)  # type: ignore[return-value]
    factors = {k: (rng.uniform(-v, v) if k == "hue" else rng.uniform(max(0.0, 1 - v), 1 + v)) for k, v in ranges.items()}
    order = [active[i] for i in rng.permutation(len(active))]
    out = []
    for f in frames:
        is_int = np.issubdtype(f.dtype, np.integer)
        x = f.astype(np.float64) / 255.0 if is_int else f.astype(np.float64)
        y = jitter_colour(x, factors, order)
        out.append((y * 255.0 + 0.5).astype(np.uint8) if is_int else y.astype(f.dtype))
    return out[0], out[1]
