"""Animator: a source image (prepared once) driven by a stream of frames in batches, so memory stays flat
however long the video, with relative motion (Sec. 3.4); numpy frames and tensors (no video I/O)."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fomm.animation import movement_scale, normalize_kp
from fomm.blocks import fold_batch_norm as fold_norms
from fomm.checkpoint import load_checkpoint
from fomm.config.schema import CROP_MODES, FommConfig, VisualizerParams, load_config
from fomm.generator import GeneratorSource, OcclusionAwareGenerator
from fomm.geometry import Keypoints, expand_kp
from fomm.keypoint_detector import KPDetector
from fomm.models import build_networks
from fomm.precision import autocast, autocast_dtype
from fomm.smoothing import OneEuroFilter

Frame = np.ndarray | Tensor


class AnimatorError(ValueError):
    """An Animator that cannot be built or used as asked; the message says why."""
    user_error = True  # services.cli.run_cli answers it with one line (fomm imports nothing of ours)


@dataclass
class SourceState:
    """What is computed once per source image."""

    image: Tensor  # 1×3×H×W in [0, 1]
    kp: Keypoints  # value 1×K×2, jacobian 1×K×2×2
    prepared: GeneratorSource  # the generator's share of the source (encoder features, motion inputs)


@dataclass
class AnimatedBatch:
    """One batch of driving frames and what the generator made of them."""

    start: int  # index of the batch's first driving frame
    driving: Tensor  # B×3×H×W, resized as the model sees it
    kp_driving: Keypoints  # detected on the driving frames
    kp_norm: Keypoints  # fed to the generator (relative or absolute motion)
    prediction: Tensor  # B×3×H×W in [0, 1]


def frames_to_tensor(frames: Frame, dtype: torch.dtype = torch.float32) -> Tensor:
    """Frames (H×W, H×W×C or B×H×W×C numpy, uint8/uint16/float; or a 3×H×W / B×3×H×W tensor) to B×3×H×W `dtype`."""
    if isinstance(frames, Tensor):
        x = frames.unsqueeze(0) if frames.dim() == 3 else frames
        return x.to(dtype) / 255 if x.dtype == torch.uint8 else x.to(dtype)
    a = np.asarray(frames)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] not in (1, 3, 4)):  # H×W or B×H×W greyscale
        a = a[..., None]
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise AnimatorError(f"expected frames H×W×{{1,3,4}} or B×H×W×{{1,3,4}}, got shape {a.shape}")
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
    # torch.from_numpy wants writable memory (PIL arrays are read-only): a copy where needed
    x = torch.from_numpy(np.require(a, requirements=["C", "W"])).permute(0, 3, 1, 2).to(dtype) / scale  # B×C×H×W
    if x.shape[1] == 4:  # alpha: composite on white, as for image files
        x = x[:, :3] * x[:, 3:] + (1 - x[:, 3:])
    elif x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x


LARGE_FRAME_PIXELS = 1 << 24  # frames above 16 MP are fitted as uint8, then made float (shrink_large)


def shrink_large(frames: Frame, size: tuple[int, int], crop: str = "center") -> Frame:
    """uint8 RGB numpy frames above LARGE_FRAME_PIXELS fitted to `size` as uint8 (fit_frames, rounded once), so no
    float copy of the whole frame is made: a 1,000 MP photo took 24 GB that way, and the OOM killer ended the run;
    other frames as given."""
    a = frames if isinstance(frames, np.ndarray) else None
    if a is None or a.dtype != np.uint8 or a.ndim not in (3, 4) or a.shape[-1] != 3 \
            or a.shape[-3] * a.shape[-2] <= LARGE_FRAME_PIXELS:
        return frames
    with warnings.catch_warnings():  # a read-only array (PIL's): only read here
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        x = torch.from_numpy(a)
    x = x.permute(2, 0, 1)[None] if a.ndim == 3 else x.permute(0, 3, 1, 2)  # B×3×H×W, channels-last: no copy
    return fit_frames(x, size, crop).permute(0, 2, 3, 1).numpy()  # B×h×w×3 uint8


def fit_frames(x: Tensor, size: tuple[int, int], crop: str = "center") -> Tensor:
    """Bring B×3×H×W frames to the model's size: central crop, black padding, or a plain stretch ('none'); float
    frames stay in [0, 1]."""
    if crop not in CROP_MODES:
        raise AnimatorError(f"crop must be one of {', '.join(CROP_MODES)}, got {crop!r}")
    h, w = x.shape[-2:]
    th, tw = size
    if crop == "center":  # largest central window with the target's aspect ratio
        ch, cw = min(h, round(w * th / tw)), min(w, round(h * tw / th))
        top, left = (h - ch) // 2, (w - cw) // 2
        x = x[..., top:top + ch, left:left + cw]
    elif crop == "pad":  # smallest window holding the frame with the target's aspect ratio
        ph, pw = max(h, round(w * th / tw)), max(w, round(h * tw / th))
        top, left = (ph - h) // 2, (pw - w) // 2
        x = F.pad(x, (left, pw - w - left, top, ph - h - top))
    if tuple(x.shape[-2:]) != (th, tw):
        x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
    return x if x.dtype == torch.uint8 else x.clamp(0, 1)


# a keypoint jacobian the motion inverts that has no inverse: all-zero weights, or a detector damaged otherwise
SINGULAR = "the model's keypoint jacobians are singular (not invertible): its checkpoint's weights are damaged"


def nonfinite_frames(x: Tensor) -> list[int]:
    """The indices of the frames of `x` (B×…) holding a NaN or inf value."""
    return (~torch.isfinite(x)).flatten(1).any(dim=1).nonzero().flatten().tolist()


def to_uint8(x: Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    """B×3×H×W in [0, 1] to B×H×W×3 uint8, resized to `size` first when given."""
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class Animator:
    """Animates a source image with driving frames (`fomm animate` wraps it); the modules go to eval mode, in place:
    channels_last, batch norms folded (fomm.blocks). Frames, keypoints and predictions: the generator's dtype."""

    def __init__(self, kp_detector: KPDetector, generator: OcclusionAwareGenerator, *,
                 frame_size: tuple[int, int] = (256, 256), relative: bool = True,
                 adapt_movement_scale: bool = True, use_relative_jacobian: bool = True, crop: str = "center",
                 batch_size: int = 8, smooth: float = 0.0, device: str | torch.device = "cpu",
                 precision: str = "auto", channels_last: bool = True, fold_batch_norm: bool = True,
                 visualizer: VisualizerParams | None = None) -> None:
        if batch_size < 1:
            raise AnimatorError(f"batch_size must be at least 1, got {batch_size}")
        if crop not in CROP_MODES:
            raise AnimatorError(f"crop must be one of {', '.join(CROP_MODES)}, got {crop!r}")
        self.device = torch.device(device)
        try:  # "auto": bf16 autocast where the device computes bf16 natively (fomm.precision)
            self.dtype = autocast_dtype(precision, self.device)
        except ValueError as e:
            raise AnimatorError(str(e)) from None
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.float_dtype = torch.float32  # of frames, keypoints and predictions
        if isinstance(generator, torch.nn.Module):  # else another engine's callables (animate.onnx_engine)
            self.float_dtype = next(generator.parameters()).dtype
            kp_detector, generator = kp_detector.eval(), generator.eval()
            if fold_batch_norm:  # in place: each conv → batch norm pair as one conv (fomm.blocks)
                fold_norms(kp_detector), fold_norms(generator)
            kp_detector = kp_detector.to(self.device, memory_format=self.memory_format)
            generator = generator.to(self.device, memory_format=self.memory_format)
        self.kp_detector, self.generator = kp_detector, generator
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.relative, self.adapt_movement_scale = relative, adapt_movement_scale
        self.use_relative_jacobian = use_relative_jacobian
        self.crop, self.batch_size = crop, batch_size
        if smooth < 0:
            raise AnimatorError(f"smooth must be ≥ 0 (0 disables), got {smooth}")
        self.smooth = float(smooth)  # one-euro time constant at rest, frames (fomm.smoothing)
        self.visualizer = visualizer or VisualizerParams()  # how keypoints are drawn on its frames, if asked

    @classmethod
    def from_config(cls, config: str | Path | FommConfig, checkpoint: str | Path | None = None, *,
                    random_init: bool = False, seed: int = 0, **options) -> Animator:
        """Build the models of a config and load a checkpoint (or, only when asked, keep a random init). `relative`,
        `adapt_movement_scale` and `use_relative_jacobian` given as None (the last also when not given) take the
        config's animate_params.normalization_params."""
        cfg = config if isinstance(config, FommConfig) else load_config(config)
        if checkpoint is None and not random_init:
            raise AnimatorError("no checkpoint given; pass one, or ask for a random-init model explicitly")
        nets = build_networks(cfg.model_params, seed=seed)
        if checkpoint is not None:
            load_checkpoint(checkpoint, generator=nets.generator, kp_detector=nets.kp_detector, map_location="cpu")
        norm = cfg.animate_params.normalization_params
        options = {"use_relative_jacobian": None, **options}  # None: the config's (the original's animate mode)
        config_says = {"relative": norm.use_relative_movement, "adapt_movement_scale": norm.adapt_movement_scale,
                       "use_relative_jacobian": norm.use_relative_jacobian}
        options.update({k: v for k, v in config_says.items() if k in options and options[k] is None})
        return cls(nets.kp_detector, nets.generator, frame_size=tuple(cfg.dataset_params.shape[:2]),
                   visualizer=cfg.visualizer_params, **options)

    def prepare(self, frames: Frame) -> Tensor:
        """Frames of any size and type, cropped/padded and resized to the model's size.  # B×3×H×W"""
        x = frames_to_tensor(shrink_large(frames, self.frame_size, self.crop), self.float_dtype).to(self.device)
        return fit_frames(x, self.frame_size, self.crop).contiguous(memory_format=self.memory_format)

    def _kp(self, x: Tensor) -> Keypoints:
        with autocast(self.dtype, self.device):
            kp = self.kp_detector(x)
        return {k: v.to(self.float_dtype) for k, v in kp.items()}  # type: ignore[return-value]

    @torch.inference_mode()
    def detect(self, frames: Frame) -> Keypoints:
        """Keypoints of frames (prepared here).  # value B×K×2"""
        return self._kp(self.prepare(frames))

    @torch.inference_mode()
    def encode_source(self, source: Frame) -> SourceState:
        """The source's keypoints, encoder features, downsampled image and heatmaps: computed once per source."""
        image = self.prepare(source)[:1]
        kp = self._kp(image)
        with autocast(self.dtype, self.device):
            prepared = self.generator.prepare_source(image, kp)
        return SourceState(image=image, kp=kp, prepared=prepared)

    @torch.inference_mode()
    def animate(self, source: Frame | SourceState, driving: Iterable[Frame],
                driving_initial: Frame | Keypoints | None = None) -> Iterator[AnimatedBatch]:
        """Stream AnimatedBatches; relative motion starts from `driving_initial` (default: the first frame)."""
        state = source if isinstance(source, SourceState) else self.encode_source(source)
        kp_initial = driving_initial  # keypoints, a frame to detect them on, or None (the first driving frame's)
        if kp_initial is not None and not isinstance(kp_initial, dict):
            kp_initial = self.detect(kp_initial)
        scale = None
        frames = iter(driving)
        filters = {k: OneEuroFilter(self.smooth) for k in ("value", "jacobian")}  # state carries over batches
        start = 0
        while batch := list(itertools.islice(frames, self.batch_size)):
            if len({(type(f), tuple(f.shape)) for f in batch}) > 1:  # frames of several sizes: fitted one by one
                x = torch.cat([self.prepare(f) for f in batch])
            else:
                x = self.prepare(torch.cat([frames_to_tensor(shrink_large(f, self.frame_size, self.crop), self.float_dtype)
                                            for f in batch]))  # an 8K frame: fitted as uint8 first
            b = x.shape[0]
            kp_driving = {k: filters[k].sequence(v) for k, v in self._kp(x).items()}  # frames in order
            if kp_initial is None:
                kp_initial = {k: v[:1] for k, v in kp_driving.items()}  # type: ignore[assignment]
            if scale is None:  # once per animation: the one host round trip of the relative motion
                scale = movement_scale(state.kp, kp_initial) if self.adapt_movement_scale and self.relative else 1.0
            try:
                kp_norm = normalize_kp(kp_source=expand_kp(state.kp, b), kp_driving=kp_driving,
                                       kp_driving_initial=expand_kp(kp_initial, b), scale=scale,
                                       use_relative_movement=self.relative,
                                       use_relative_jacobian=self.use_relative_jacobian)
                with autocast(self.dtype, self.device):
                    out = self.generator(None, kp_driving=kp_norm, kp_source=expand_kp(state.kp, b),
                                         source=state.prepared, outputs="prediction")
            except torch.linalg.LinAlgError:
                raise AnimatorError(f"{SINGULAR} (driving frames {start}–{start + b - 1})") from None
            prediction = out["prediction"].to(self.float_dtype)
            if nonfinite_frames(prediction):  # written as black frames, and reported done
                raise AnimatorError(f"the model's output holds NaN or inf values (driving frames {start}–{start + b - 1})"
                                    ": its checkpoint's weights or batch-norm statistics are damaged")
            yield AnimatedBatch(start=start, driving=x, kp_driving=kp_driving, kp_norm=kp_norm, prediction=prediction)
            start += b

