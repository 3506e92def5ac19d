"""File-level animation (`fomm animate`, the batch job): image + driving video files → video, driving fps and audio
kept, the whole frame fitted (crop center|pad|none) or auto-cropped on the subject (animate.autocrop)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from animate.autocrop import AutoCropOptions, auto_crop_frames, resolve_crop
from animate.backends import best_frame, best_landmarker
from animate.render import render
from fomm.animator import Animator, AnimatorError, to_uint8
from fomm.config.schema import load_config
from services.video_read import (
    DamagedImageError,
    ImageError,
    VideoError,
    VideoInfo,
    iter_frames,
    probe_video,
    read_image,
)
from services.video_write import VideoWriter

OUTPUT_SUFFIXES = (".mp4", ".mov", ".mkv")
LandmarkFn = Callable[[np.ndarray], "np.ndarray | None"]  # H×W×3 uint8 frame → N×2 face landmarks, or None


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


def read_source(path: str | Path) -> np.ndarray:
    """The source image as H×W×3 uint8 RGB: an image file, or the first frame of a video."""
    try:
        return read_image(path)
    except ImageError as image_err:
        if not Path(path).is_file() or isinstance(image_err, DamagedImageError):  # a damaged image is refused:
            raise  # FFmpeg's image decoders would conceal the damage (a cut-off JPEG's missing part filled)
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
    """The Animator of a file-level animation and, for `crop` auto (the default where a subject detector runs
    here), the auto-crop options; a --crop auto that cannot run fails here, before the model is built."""
    crop, auto_crop = resolve_crop(load_config(config), crop, subject=subject, paste_back=paste_back, smooth=smooth,
                                   kind=subject_kind)
    animator = Animator.from_config(config, checkpoint, crop="none" if auto_crop else crop, smooth=smooth,
                                    **animator_options)
    return animator, auto_crop


def whole_frames(animator: Animator, source: np.ndarray, source_path: str | Path, driving: str | Path,
                 num_frames: int, *, layout: str = "result", draw_kp: bool = False,
                 output_size: tuple[int, int] | None = None, landmarks: LandmarkFn | None = None,
                 progress: bool = True) -> tuple[Iterator[np.ndarray], int | None, list[str]]:
    """The output frames of the whole driving frames (the Animator's crop) and the best initial frame."""
    best, initial = None, None
    if landmarks is not None:  # on the frames as the model sees them
        frames = tqdm(iter_frames(driving, expected=num_frames), total=num_frames, unit="frame", desc="landmarks",
                      disable=not progress)
        best = best_frame(landmarks, to_uint8(animator.prepare(source))[0],
                          (to_uint8(animator.prepare(f))[0] for f in frames), str(source_path), str(driving))
        initial = next(iter_frames(driving, best, best + 1))
    frames = render(animator, source, iter_frames(driving, expected=num_frames), driving_initial=initial,
                    layout=layout, draw_kp=draw_kp, output_size=output_size)
    return frames, best, []


def write_frames(out: Path, frames: Iterable[np.ndarray], info: VideoInfo, driving: str | Path,
                 progress: bool) -> tuple[int, int, int]:
    """Encode `frames` at the driving video's fps with its audio; returns (frames written, height, width)."""
    with VideoWriter(out, info.fps, audio_from=driving if info.has_audio else None) as writer, \
            tqdm(total=info.num_frames, unit="frame", desc=f"animate {out.name}", disable=not progress,
                 dynamic_ncols=True) as bar:
        for frame in frames:
            writer.write(frame)
            bar.update(1)
            height, width = frame.shape[:2]
    return writer.num_frames, height, width


def animate_file(animator: Animator, source: str | Path, driving: str | Path, out: str | Path, *,
                 layout: str = "result", draw_kp: bool = False, output_size: tuple[int, int] | None = None,
                 use_best_frame: bool = False, landmarks: LandmarkFn | None = None, progress: bool = True,
                 auto_crop: AutoCropOptions | None = None) -> AnimateResult:
    """Animate a source image file with a driving video file into `out` (driving fps and audio kept).

    With `use_best_frame`, relative motion starts from the driving frame whose face landmarks (`landmarks`,
    default the best backend present) best match the source's; frames are still written in their order.
    `auto_crop`: crop on the subject and paste back into the full frame (animate.autocrop).
    """
    out = check_output(out)
    source_frame = read_source(source)
    info = probe_driving(driving)
    started = time.perf_counter()
    marker = (landmarks or best_landmarker(str(animator.device))) if use_best_frame else None
    look = {"layout": layout, "draw_kp": draw_kp, "output_size": output_size, "landmarks": marker}
    if auto_crop is None:
        frames, best, notes = whole_frames(animator, source_frame, source, driving, info.num_frames,
                                           progress=progress, **look)
    else:
        frames, best, notes = auto_crop_frames(animator, source_frame, source, driving, info.num_frames, auto_crop,
                                               **look)
    if marker is not None:
        notes.append(f"best frame by {getattr(marker, 'name', 'custom')} landmarks")
    count, height, width = write_frames(out, frames, info, driving, progress)
    return AnimateResult(path=str(out), num_frames=count, fps=info.fps, width=width, height=height,
                         has_audio=info.has_audio, best_frame=best, seconds=time.perf_counter() - started,
                         notes=tuple(notes))
