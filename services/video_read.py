"""Reading video with PyAV: probe, decode RGB frames (rotation applied); a folder of frames, or an image of frames
side by side, reads as a video (services.image_read reads each)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from services.image_read import PathLike, VideoError, not_a_file, read_image

# the file names taken for videos where a folder or glob is listed (preprocess --input)
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".flv", ".mpg", ".mpeg", ".ts", ".gif")
# a folder of frames, or an image of k square frames side by side (k·H wide, k ≥ 2), reads as a video: the original
# FOMM's datasets keep clips so (a folder per clip named like a video; one image a clip, e.g. its BAIR set)
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
FRAMES_FPS = 25.0  # such a folder or image keeps no frame rate: VoxCeleb's and Tai-Chi-HD's


@dataclass
class VideoInfo:
    """What a video holds. width/height are the displayed size, i.e. after the rotation metadata."""

    path: str
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    has_audio: bool
    rotation: int  # degrees counter-clockwise that the stored frames are turned for display


def frame_files(path: PathLike) -> list[Path] | None:
    """The frames of a folder of .png/.jpg frames, in name order (0000000.png, …); None for anything else."""
    p = Path(path)
    if not p.is_dir():
        return None
    return sorted(f for f in p.iterdir() if f.suffix.lower() in FRAME_EXTENSIONS and not f.name.startswith(".")) or None


def strip_frames(path: PathLike, head: bytes | None = None) -> tuple[int, int] | None:
    """(frames, side) of a .png/.jpg of k square frames side by side (W = k·H, k ≥ 2), from its header (or `head`,
    the file's first bytes); None for anything else (a video, a folder, a picture of other proportions)."""
    p = Path(path)
    if p.suffix.lower() not in FRAME_EXTENSIONS or (head is None and not p.is_file()):
        return None
    Image.MAX_IMAGE_PIXELS = None  # the header alone is read here: read_image refuses a bomb, naming its file
    try:
        with Image.open(p if head is None else io.BytesIO(head)) as img:
            width, height = img.size
    except (OSError, SyntaxError, ValueError):  # not an image: read_image says why where it is read
        return None
    return (width // height, height) if height and width % height == 0 and width >= 2 * height else None


def _strip_timed(path: PathLike, frames: int, side: int, start: int,
                 stop: int | None) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds, frame) of an image of square frames side by side, at FRAMES_FPS."""
    image = read_image(path)
    if image.shape[:2] != (side, frames * side):  # its EXIF orientation turned it
        raise VideoError(f"{path}: {image.shape[1]}×{image.shape[0]} as shown, not {frames} square frames side by side")
    for i in range(start, min(stop if stop is not None else frames, frames)):
        yield i / FRAMES_FPS, np.ascontiguousarray(image[:, i * side:(i + 1) * side])


def _frames_timed(path: PathLike, files: list[Path], start: int,
                  stop: int | None) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds, frame) of a folder of frames at FRAMES_FPS; every frame of the first one's size."""
    size = None
    for i, file in enumerate(files[start:stop], start):
        frame = read_image(file)
        size = size or frame.shape
        if frame.shape != size:
            raise VideoError(f"{path}: frame {file.name} is {frame.shape[1]}×{frame.shape[0]}, the first "
                             f"{size[1]}×{size[0]}")
        yield i / FRAMES_FPS, frame


def _open(path: PathLike) -> av.container.InputContainer:
    p = Path(path)
    if p.is_dir():
        raise VideoError(f"{p}: a folder without .png or .jpg frames (a video is a file, or a folder of frames)")
    if why := not_a_file(p):  # a pipe would block the read forever
        raise VideoError(f"{p}: {why}")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: empty file (0 bytes)")
    try:
        container = av.open(f"file:{p}")  # FFmpeg's file protocol: 'clip:1.mp4' is no protocol 'clip'
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise VideoError(f"{p}: not a readable video ({getattr(e, 'strerror', None) or e})") from e  # not FFmpeg's URL
    if not container.streams.video:
        container.close()
        raise VideoError(f"{p}: no video stream")
    return container


def _rotate(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Turn an H×W×3 frame counter-clockwise by `rotation` degrees (a multiple of 90)."""
    return np.ascontiguousarray(np.rot90(frame, k=round(rotation / 90) % 4))  # k=0: the frame itself


def _stream_fps(stream: av.video.stream.VideoStream) -> float | None:
    rates = (stream.average_rate, stream.guessed_rate, stream.base_rate)
    return next((float(rate) for rate in rates if rate is not None and float(rate) > 0), None)


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The video a file holds: FFmpeg's best video stream (a cover picture or one-frame thumbnail track before it,
    as some MKVs and phone videos carry, is not it)."""
    return container.streams.best("video") or container.streams.video[0]


def _decode(path: PathLike, container: av.container.InputContainer) -> Iterator[av.VideoFrame]:
    stream = video_stream(container)
    stream.thread_type = "AUTO"
    try:
        yield from container.decode(stream)
    except av.FFmpegError as e:
        raise VideoError(f"{path}: corrupt video stream ({e})") from e


def probe_video(path: PathLike) -> VideoInfo:
    """Size, frame rate, frame count, duration, audio and rotation of a video (decodes one frame)."""
    if (files := frame_files(path)) or (strip := strip_frames(path)):  # a folder of frames, or one image of them
        n, (height, width) = (len(files), read_image(files[0]).shape[:2]) if files else (strip[0], (strip[1],) * 2)
        return VideoInfo(path=str(path), width=width, height=height, fps=FRAMES_FPS, num_frames=n,
                         duration=n / FRAMES_FPS, has_audio=False, rotation=0)
    with _open(path) as container:
        stream = video_stream(container)
        first = next(_decode(path, container), None)
        if first is None:
            raise VideoError(f"{path}: no decodable frames (zero-frame video)")
        rotation = int(first.rotation or 0)
        num_frames = int(stream.frames or 0)
        if num_frames <= 0:  # containers without a frame count (mkv, webm): count packets, no decoding
            container.seek(0)
            num_frames = sum(1 for pkt in container.demux(stream) if pkt.size > 0)
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        fps = _stream_fps(stream) or (num_frames / duration if duration else 25.0)
        duration = duration or num_frames / fps
        w, h = first.width, first.height
        if round(rotation / 90) % 2:
            w, h = h, w
        return VideoInfo(path=str(path), width=w, height=h, fps=fps, num_frames=num_frames, duration=duration,
                         has_audio=bool(container.streams.audio), rotation=rotation)


def iter_frames_timed(path: PathLike, start: int = 0, stop: int | None = None,
                      expected: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds from the first frame, H×W×3 uint8 RGB frame) for frames start ≤ i < stop; decoding to the end fails
    when far fewer frames decode than listed or `expected` (one frame of slack: some count a trailing empty packet)."""
    if files := frame_files(path):
        yield from _frames_timed(path, files, start, stop)
        return
    if strip := strip_frames(path):
        yield from _strip_timed(path, *strip, start, stop)
        return
    with _open(path) as container:
        stream = video_stream(container)
        declared = expected or int(stream.frames or 0)
        count, t0 = 0, None
        for frame in _decode(path, container):
            if stop is not None and count >= stop:
                return  # all that was asked for (stop ≥ 1): the rest is not decoded, nor checked
            t = float(frame.time) if frame.time is not None else count / (_stream_fps(stream) or 25.0)
            t0 = t if t0 is None else t0
            if count >= start:
                yield t - t0, _rotate(frame.to_ndarray(format="rgb24"), int(frame.rotation or 0))
            count += 1
        if count == 0:
            raise VideoError(f"{path}: no decodable frames (zero-frame video)")
        # the index promised more frames than the data held: a cut-off download or a damaged file
        if declared and count < declared - (1 if expected else max(2, declared // 100)):
            raise VideoError(f"{path}: truncated or corrupt: decoded {count} of {declared} frames")


def iter_frames(path: PathLike, start: int = 0, stop: int | None = None,
                expected: int | None = None) -> Iterator[np.ndarray]:
    """Frames start ≤ i < stop of a video as H×W×3 uint8 RGB arrays, rotation metadata applied."""
    return (frame for _, frame in iter_frames_timed(path, start, stop, expected))


def read_frames(path: PathLike, max_frames: int | None = None) -> np.ndarray:
    """The first max_frames (default all) frames of a video.  # T×H×W×3 uint8"""
    return np.stack(list(iter_frames(path, 0, max_frames)))
