"""Reading video and images with PyAV and Pillow: probe, decode RGB frames (rotation applied), stills."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from services.checks import NOT_REGULAR
from services.cli import UserError

PathLike = str | os.PathLike
# the file names taken for videos where a folder or glob is listed (preprocess --input)
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".flv", ".mpg", ".mpeg", ".ts", ".gif")
# a folder of frames, or an image of k square frames side by side (k·H wide, k ≥ 2), reads as a video: the original
# FOMM's datasets keep clips so (a folder per clip named like a video; one image a clip, e.g. its BAIR set)
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
FRAMES_FPS = 25.0  # such a folder or image keeps no frame rate: VoxCeleb's and Tai-Chi-HD's
MAX_IMAGE_PIXELS = 1 << 30  # the largest image read: 1,074 MP (3 GiB as RGB), 5× a 200 MP phone photo
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")  # ftyp brands of HEIF stills


class VideoError(UserError, ValueError):
    """A video (or image) that cannot be read or written; the message names the file and the problem."""


class ImageError(VideoError):
    """A file that is not a readable image."""


class DamagedImageError(ImageError):
    """A file that is an image, but cut off or corrupt, too large to decode, or one FFmpeg would read only in part:
    refused, never concealed."""


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


def _not_a_file(p: Path) -> str | None:
    """Why `p` is no regular file to read (None: it is one)."""
    if p.is_file():
        return None
    if p.is_dir():
        return "is a directory, not a file"
    return NOT_REGULAR if p.exists() else "no such file"


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
    if why := _not_a_file(p):  # a pipe would block the read forever
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


def _decode(path: PathLike, container: av.container.InputContainer) -> Iterator[av.VideoFrame]:
    stream = container.streams.video[0]
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
        stream = container.streams.video[0]
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
        stream = container.streams.video[0]
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


def read_image(path: PathLike, max_pixels: int | None = None) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB, whatever its extension says (format sniffed from the bytes); one of more
    than `max_pixels` shrunk by a whole factor to at most that many as it is read (a JPEG decoded small: 1/2 … 1/8)."""
    from PIL import ImageOps, UnidentifiedImageError

    p = Path(path)
    if why := _not_a_file(p):
        raise ImageError(f"{p}: {why}")
    Image.MAX_IMAGE_PIXELS = None  # checked here: PIL's 179 MP refused a 200 MP phone photo, and warned from 89 MP
    heif_plugin = _register_heif()
    try:
        img = Image.open(p)  # reads the header only
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if not heif_plugin and _tiled_heif(p):  # FFmpeg, read_source's fallback, decodes its first tile alone
            raise DamagedImageError(f"{p}: a HEIC/HEIF photo in tiles (as phones save them), which only pillow-heif "
                                    "reads whole: `pip install pillow-heif`, or convert it to JPEG or PNG") from None
        raise ImageError(f"{p}: not a readable image ({e})") from e
    if img.width * img.height > MAX_IMAGE_PIXELS:  # a few bytes that would decode to gigabytes
        img.close()
        raise DamagedImageError(f"{p}: image refused: {img.width}×{img.height} is {img.width * img.height / 1e6:,.0f} "
                                f"MP, above the {MAX_IMAGE_PIXELS / 1e6:,.0f} MP a source image may have (a "
                                "decompression bomb?)")
    try:  # the format is known from here on: a failure is a damaged image (a truncated JPEG, …)
        with img:
            if max_pixels and img.width * img.height > max_pixels:  # before the turn, which copies the image whole
                factor = _factor(img, max_pixels)
                img.draft(img.mode, (img.width // factor, img.height // factor))
                img.load()
                img = img.reduce(_factor(img, max_pixels)) if img.width * img.height > max_pixels else img
            img = ImageOps.exif_transpose(img)  # the EXIF orientation (info kept by reduce)
            img.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise DamagedImageError(f"{p}: damaged {img.format or ''} image ({e})".replace("  ", " ")) from e
    return _to_rgb8(img, p)


def _factor(img, max_pixels: int) -> int:  # noqa: ANN001 - a PIL image
    """The whole factor that brings `img` to at most `max_pixels`."""
    return math.ceil(math.sqrt(img.width * img.height / max_pixels))


def _register_heif() -> bool:
    """Pillow opens HEIC/HEIF photos (iPhones' default) where pillow-heif is installed; whether it is."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()  # once: it checks itself
    return True


def _tiled_heif(path: Path) -> bool:
    """A HEIF file whose image FFmpeg sees as several streams: the tiles of a grid, which it does not join."""
    with path.open("rb") as f:
        head = f.read(32)
    if head[4:8] != b"ftyp" or not any(brand in head[8:32] for brand in HEIF_BRANDS):
        return False
    try:
        with av.open(f"file:{path}") as container:
            return len(container.streams.video) > 1
    except av.FFmpegError:
        return False


def _to_rgb8(img, path: Path) -> np.ndarray:  # noqa: ANN001 - a PIL image
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # high bit depth greyscale: scale, don't clip
        a = np.asarray(img, dtype=np.float64)
        if not np.isfinite(a).all():  # a float image: would cast to arbitrary grey levels
            raise DamagedImageError(f"{path}: {int((~np.isfinite(a)).sum())} of its {a.size} pixels are NaN or inf")
        if img.mode == "F" and a.max() <= 1.0:  # white: 1.0 in a float image of [0, 1]
            top = 1.0
        else:  # else the largest value of its depth
            top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if img.mode in ("P", "PA", "LA", "La", "RGBa") or "A" in img.mode or "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "RGBA":  # composite on white so transparent areas do not show arbitrary hidden colours
        a = np.asarray(img, dtype=np.float32)
        alpha = a[..., 3:4] / 255.0
        return (a[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.asarray(img.convert("RGB"))  # H×W×3 whatever the mode
