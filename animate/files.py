"""File-level animation (`fomm animate`, the batch job): image + driving video → video (its fps and audio), fitted or
auto-cropped and pasted back, in up to three passes decoding the driving video again (flat memory)."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from animate.backends import BackendUnavailable, best_frame, best_landmarker, subject_detector
from animate.backends import subject_kind as kind_of
from animate.crop_plan import DETECT_EVERY, crop_subpixel, plan_crops
from animate.paste import even_frame
from animate.render import render
from evaluation.visualize import check_colormap
from fomm.animator import Animator, AnimatorError, to_uint8
from fomm.config.schema import load_config
from services import checks
from services.image_read import DamagedImageError, ImageError, VideoError, read_image
from services.video_read import VideoInfo, iter_frames, probe_video
from services.video_write import GIF_MAX_FPS, OUTPUT_SUFFIXES, VideoWriter

LandmarkFn = Callable[[np.ndarray], "np.ndarray | None"]  # H×W×3 uint8 frame → N×2 face landmarks, or None


@dataclass(frozen=True)
class AutoCropOptions:
    """What `--crop auto` does: which subject, paste back or not, how much smoothing (0: none)."""

    kind: str = "face"  # face | person (animate.backends.subject_kind of the config)
    subject: int | None = None  # counted from the left; None: the largest
    paste_back: bool = True
    smooth: float = 0.0  # one-euro time constant at rest, frames, of the crop box (keypoints: Animator.smooth)


@dataclass
class AnimateResult:
    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    has_audio: bool
    best_frame: int | None
    seconds: float
    notes: tuple[str, ...] = ()  # which detector / landmark backend was used

    @property
    def frames_per_second(self) -> float:
        return self.num_frames / self.seconds if self.seconds > 0 else float("inf")


def check_output(out: str | Path) -> Path:
    """Fail early, naming the file, when the output cannot be written (the video itself is written atomically)."""
    out = Path(out)
    if out.is_dir():
        raise AnimatorError(f"{out}: is a folder, not an output file")
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise AnimatorError(f"{out}: unsupported output format {out.suffix or '(none)'!r} "
                           f"(use {', '.join(OUTPUT_SUFFIXES)})")
    existing = next(p for p in (out.parent, *out.parent.parents) if p.exists())  # folders come with the video
    if not existing.is_dir():
        raise AnimatorError(f"{out}: cannot write: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise AnimatorError(f"{out}: cannot write to {existing} ({err.strerror or err})") from None
    return out


SOURCE_PIXELS = 1 << 25  # a larger photo is read shrunk to this: an 8K frame's 33 MP, whole (the model sees 256², an
# output is ≤ 8K); read whole, a 1,000 MP PNG of 3 MB took 24 GB, and the OOM killer ended `fomm animate` unannounced


def read_source(path: str | Path) -> np.ndarray:
    """The source image as H×W×3 uint8 RGB (≤ SOURCE_PIXELS): an image file, or the first frame of a video."""
    try:
        return read_image(path, SOURCE_PIXELS)
    except ImageError as image_err:
        if not Path(path).is_file() or isinstance(image_err, DamagedImageError):  # a damaged image is refused:
            raise  # FFmpeg's image decoders would conceal the damage (a cut-off JPEG's missing part filled)
        if isinstance(image_err.__cause__, PermissionError):  # no decoder can read it either: say why
            raise
        if Path(path).stat().st_size == 0:  # as the driving video's line says it
            raise ImageError(f"{path}: empty file (0 bytes)") from None
        try:
            return next(iter_frames(path, 0, 1))
        except VideoError:
            raise ImageError(f"{path}: not a readable image or video") from image_err


def probe_driving(path: str | Path) -> VideoInfo:
    """The driving video's info; an image, or any one-frame file, is refused (source and driving swapped?)."""
    info = probe_video(path)
    if info.num_frames < 2:
        raise VideoError(f"{path}: one frame only: the driving input must be a video (the source is the image)")
    return info


def build_animator(config: str | Path, checkpoint: str | Path | None = None, *, crop: str | None = None,
                   subject: int | None = None, paste_back: bool = True, smooth: float = 0.0,
                   subject_kind: str | None = None,
                   **animator_options) -> tuple[Animator, AutoCropOptions | None]:  # noqa: ANN003 - Animator's
    """The Animator and, for `crop` auto (default where the config's subject detector runs here, else center), the
    auto-crop options; a --crop auto that cannot run fails before the model is built."""
    cfg = load_config(config)
    check_colormap(config, cfg.visualizer_params)
    kind = kind_of(cfg, subject_kind)
    if crop in (None, "auto"):
        try:
            subject_detector(kind)
            crop = "auto"
        except BackendUnavailable as err:
            if crop == "auto":
                raise AnimatorError(f"--crop auto: {err}") from None
            crop = "center"
    if crop != "auto" and subject is not None:
        raise AnimatorError(f"--subject needs --crop auto (got --crop {crop})")
    auto_crop = AutoCropOptions(kind=kind, subject=subject, paste_back=paste_back, smooth=smooth) \
        if crop == "auto" else None
    animator = Animator.from_config(config, checkpoint, crop="none" if auto_crop else crop, smooth=smooth,
                                    **animator_options)
    animator.batch_size = batch_that_fits(animator, cfg.model_params.generator_params.block_expansion)
    return animator, auto_crop


FLOATS_PER_PIXEL = 6  # × the generator's block_expansion: what a frame's forward pass holds at once (measured 3.6–5.7)


def batch_that_fits(animator: Animator, block_expansion: int) -> int:
    """The Animator's batch, or on a CPU the most frames that the memory free now holds (a note says so): vox-512
    at --batch-size 128 wanted 29 GB of 24, and the OOM killer ended `fomm animate` after 3 minutes, unannounced."""
    free = checks.free_memory() if animator.device.type == "cpu" else None  # a GPU's is one "out of memory" line
    frame = 4 * FLOATS_PER_PIXEL * block_expansion * animator.frame_size[0] * animator.frame_size[1]  # bytes
    fits = max(1, int(0.8 * free) // frame) if free is not None else animator.batch_size
    if fits < animator.batch_size:
        print(f"note: --batch-size {animator.batch_size}: batches of {fits} frames, what this machine's free memory "
              f"({free / 2**30:.1f} GiB) holds at {animator.frame_size[0]}×{animator.frame_size[1]}", flush=True)
    return min(fits, animator.batch_size)


def animate_frames(animator: Animator, source: np.ndarray, driving: np.ndarray, fps: float, out: str | Path, *,
                   layout: str = "result", draw_kp: bool = False, output_size: tuple[int, int] | None = None,
                   **_file_options) -> Path:  # noqa: ANN003 - animate_file's, which a dataset's clips do not take
    """A dataset's clip pair (the animate mode): a source frame and driving frames (H×W×3, T×H×W×3 uint8), each
    fitted as the config's crop says, into a video at `fps`; a file given its name meanwhile is never replaced."""
    out = check_output(out)
    with VideoWriter(out, fps, replace=False) as writer:
        for frame in render(animator, source, iter(driving), layout=layout, draw_kp=draw_kp, output_size=output_size):
            writer.write(frame)
    return out


def animate_file(animator: Animator, source: str | Path, driving: str | Path, out: str | Path, *,
                 layout: str = "result", draw_kp: bool = False, output_size: tuple[int, int] | None = None,
                 use_best_frame: bool = False, landmarks: LandmarkFn | None = None, progress: bool = True,
                 auto_crop: AutoCropOptions | None = None) -> AnimateResult:
    """Animate `source` with `driving` into `out`; `use_best_frame`: relative motion from the driving frame whose face
    landmarks (`landmarks`, default the best backend present) best match the source's."""
    out = check_output(out)
    source_frame = read_source(source)
    info = probe_driving(driving)
    started = time.perf_counter()
    if use_best_frame:
        marker_name, marker = ("custom", landmarks) if landmarks else best_landmarker(str(animator.device))
    plan, notes, initial, best, size = None, [], None, None, animator.frame_size
    if auto_crop is not None:
        plan = plan_crops(source_frame, iter_frames(driving, expected=info.num_frames),
                          subject_detector(auto_crop.kind), auto_crop.kind, subject=auto_crop.subject,
                          smooth=auto_crop.smooth, source_name=str(source), driving_name=str(driving))
        notes.append(f"auto-crop: {auto_crop.kind} detector {plan.detector}, subject detected on "
                     f"{int(plan.driving_found.sum())} of the {len(plan.driving_found)} driving frames "
                     f"(searched every {DETECT_EVERY}), crop smoothing {auto_crop.smooth:g}")
    if use_best_frame:  # on the frames as the model sees them: the Animator's crop, or the subject's (if found)
        if plan is None:
            frames = tqdm(iter_frames(driving, expected=info.num_frames), total=info.num_frames, unit="frame",
                          desc="landmarks", disable=not progress)
            reference = to_uint8(animator.prepare(source_frame))[0]
            candidates = (to_uint8(animator.prepare(f))[0] for f in frames)
        else:
            reference = crop_subpixel(even_frame(source_frame), plan.source_box, size)
            candidates = (crop_subpixel(f, box, size) if found else None
                          for f, box, found in zip(iter_frames(driving), plan.driving_boxes, plan.driving_found))
        best = best_frame(marker, reference, candidates, str(source), str(driving))
        initial = next(iter_frames(driving, best, best + 1))
        if plan is not None:
            initial = crop_subpixel(initial, plan.driving_boxes[best], size)
        notes.append(f"best frame by {marker_name} landmarks")
    frames = render(animator, source_frame, iter_frames(driving, expected=info.num_frames), layout=layout,
                    draw_kp=draw_kp, output_size=output_size, driving_initial=initial, plan=plan,
                    paste=auto_crop is None or auto_crop.paste_back)
    # encoded at the driving video's fps, with its audio; a file given its name meanwhile is never replaced
    with VideoWriter(out, info.fps, audio_from=driving if info.has_audio else None, replace=False) as writer:
        for frame in tqdm(frames, total=info.num_frames, unit="frame", desc=f"animate {out.name}",
                          disable=not progress, dynamic_ncols=True):
            writer.write(frame)
            height, width = frame.shape[:2]
    if writer.keep_every > 1:
        notes.append(f"a GIF shows at most {GIF_MAX_FPS} frames a second: 1 driving frame in {writer.keep_every} "
                     f"kept")
    if info.has_audio and not writer.keeps_audio:
        notes.append(f"the driving video's audio is left out: a {out.suffix.lower()} file keeps none")
    kept = math.ceil(writer.num_frames / writer.keep_every)  # the frames the file holds (a GIF's: fewer)
    return AnimateResult(path=str(out), num_frames=kept, fps=info.fps / writer.keep_every, width=width, height=height,
                         has_audio=writer.keeps_audio, best_frame=best, seconds=time.perf_counter() - started,
                         notes=tuple(notes))
