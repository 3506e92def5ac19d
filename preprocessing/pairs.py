"""Training samples as in the original FOMM: source/driving frame pairs and their paired augmentation.

Two frames of one clip drawn uniformly with replacement and sorted in time (the earlier is the source);
augmentation (horizontal flip, time flip, zoom, crop, colour jitter, in the original's order) is drawn once and
applied alike to both frames."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fomm.config.schema import AugmentationParams


def sample_pair(num_frames: int, rng: np.random.Generator) -> tuple[int, int]:
    """(i_source, i_driving): two frame indices uniform with replacement, sorted in time."""
    if num_frames < 1:
        raise ValueError(f"cannot sample a frame pair from a clip of {num_frames} frames")
    i, j = np.sort(rng.choice(num_frames, size=2, replace=True))
    return int(i), int(j)


def jitter_colour(img: np.ndarray, factors: dict[str, float], order: Sequence[str]) -> np.ndarray:
    """Apply brightness/contrast/saturation (multiplicative factors) and hue (a shift in turns) in `order` to an
    H×W×3 float image in [0, 1]; computed in float32 (OpenCV's colour conversions), returned in the input's dtype.
    Grey levels are 0.299 R + 0.587 G + 0.114 B (ITU-R 601, as torchvision)."""
    out = np.array(img, dtype=np.float32)  # a copy: brightness and the clip work in place
    for name in order:
        f = np.float32(factors[name])
        if name == "brightness":
            out *= f
        elif name == "contrast":  # towards the mean grey level: f·x + (1 − f)·mean
            out = cv2.addWeighted(out, float(f), out, 0.0, float((1 - f) * np.mean(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY))))
        elif name == "saturation":  # towards each pixel's grey level
            grey = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
            out = cv2.addWeighted(out, float(f), grey, float(1 - f), 0.0)
        elif name == "hue":  # a rotation by f turns: RGB → HSV (hue in degrees) → RGB
            hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
            hsv[..., 0] = (hsv[..., 0] + 360.0 * float(f)) % 360.0
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        np.clip(out, 0.0, 1.0, out=out)
    return out.astype(img.dtype, copy=False)


def augment_pair(source: np.ndarray, driving: np.ndarray, rng: np.random.Generator,
                 params: AugmentationParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Augment an H×W×3 frame pair (uint8 or [0, 1] floats) alike by the config's augmentation_params (None: none)."""
    params = params or AugmentationParams()
    frames = [source, driving]
    if params.flips.time_flip and rng.random() < 0.5:  # time flip: the later frame becomes the source
        frames = frames[::-1]
    if params.flips.horizontal_flip and rng.random() < 0.5:
        frames = [f[:, ::-1] for f in frames]
    if params.resize_param is not None:  # a zoom by a factor drawn in ratio (bilinear)
        scale, (h, w) = rng.uniform(*params.resize_param.ratio), frames[0].shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        frames = [cv2.resize(np.ascontiguousarray(f), size, interpolation=cv2.INTER_LINEAR) for f in frames]
    if params.crop_param is not None:  # a window of crop size at a random place; a smaller frame is edge-padded
        (ch, cw), (h, w) = params.crop_param.size[:2], frames[0].shape[:2]
        pad = [((ch - h) // 2, (ch - h + 1) // 2) if ch > h else (0, 0),
               ((cw - w) // 2, (cw - w + 1) // 2) if cw > w else (0, 0), (0, 0)]
        frames = [np.pad(f, pad, mode="edge") for f in frames]
        y, x = (int(rng.integers(0, n - c + 1)) for n, c in zip(frames[0].shape[:2], (ch, cw)))
        frames = [f[y:y + ch, x:x + cw] for f in frames]
    ranges = params.jitter
    active = [k for k, v in ranges.items() if v > 0]
    if not active:
        return tuple(np.ascontiguousarray(f) for f in frames)  # type: ignore[return-value]
    factors = {k: (rng.uniform(-v, v) if k == "hue" else rng.uniform(max(0.0, 1 - v), 1 + v)) for k, v in ranges.items()}
    order = [active[i] for i in rng.permutation(len(active))]
    out = []
    for f in frames:
        is_int = np.issubdtype(f.dtype, np.integer)
        x = f.astype(np.float32) * np.float32(1 / 255) if is_int else f
        y = jitter_colour(x, factors, order)
        out.append((y * 255.0 + 0.5).astype(np.uint8) if is_int else y.astype(f.dtype))
    return out[0], out[1]
