"""Writing video with PyAV: RGB frames encoded atomically (temporary file, then rename), a video's audio alongside;
H.264 + AAC (.mp4, .mov, .mkv), VP9 + Opus (.webm) or an animated GIF (adaptive palette per frame, no audio)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from services.atomic import atomic_path
from services.video_read import PathLike, VideoError, _open, video_stream

MAX_SIDE = 16384  # the largest frame side libx264 encodes (libvpx 16,384 too; GIF 65,535)


@dataclass(frozen=True)
class Encoding:
    """How one output format is encoded: FFmpeg's video encoder, its pixel format and options, its audio encoder."""

    video: str
    pix_fmt: str
    options: tuple[tuple[str, str], ...]
    audio: str | None  # None: the format keeps no audio


H264 = Encoding("libx264", "yuv420p", (("crf", "18"),), "aac")
ENCODINGS = {".mp4": H264, ".mov": H264, ".mkv": H264,
             ".webm": Encoding("libvpx-vp9", "yuv420p", (("crf", "30"), ("b", "0"), ("row-mt", "1")), "libopus"),
             ".gif": Encoding("gif", "pal8", (), None)}
OUTPUT_SUFFIXES = tuple(ENCODINGS)  # what an animation may be written as
GIF_MAX_FPS = 50  # a GIF frame lasts whole hundredths of a second; browsers show one of under 2 for 10


class VideoWriter:
    """A video in the encoding of its suffix (ENCODINGS; others H.264) written atomically, with `audio_from`'s audio
    (from its first video frame, trimmed) where the format keeps audio;
    `deterministic`: byte-identical files, one thread and x264's C code (its SIMD reads unwritten memory; 3× slower);
    without `replace`, a file that took `path`'s name while it was written stays (services.atomic.MadeMeanwhileError)."""

    def __init__(self, path: PathLike, fps: float, audio_from: PathLike | None = None,
                 deterministic: bool = False, replace: bool = True) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        if self.fps <= 0:
            raise VideoError(f"{self.path}: fps must be positive, got {fps}")
        self.encoding = ENCODINGS.get(self.path.suffix.lower(), H264)
        self.audio_from = Path(audio_from) if audio_from is not None and self.encoding.audio else None
        self.deterministic, self.replace = deterministic, replace
        self.num_frames = 0  # given to write()
        # a GIF above GIF_MAX_FPS keeps every k-th frame (60 fps: 30), else browsers slow it and FFmpeg refuses
        # two frames in one hundredth of a second (120 fps)
        self.keep_every = math.ceil(self.fps / GIF_MAX_FPS - 1e-9) if self.encoding.video == "gif" else 1
        self._target = contextlib.ExitStack()  # services.atomic: the temporary, renamed onto path on a clean exit
        self._container = self._video = self._audio = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> VideoWriter:
        tmp = self._target.enter_context(atomic_path(self.path, replace=self.replace))
        try:
            self._container = av.open(f"file:{tmp}", "w")  # a name with a colon is no protocol
        except (av.FFmpegError, ValueError) as e:  # ValueError: no container format for the file's suffix
            self._target.__exit__(type(e), e, e.__traceback__)  # failed: the temporary goes, the target stays as it was
            raise VideoError(f"{self.path}: cannot open for writing ({e})") from e
        return self

    def _start(self, height: int, width: int) -> None:
        if max(height, width) > MAX_SIDE:  # libx264 refused to open: a traceback after the whole animation's work
            raise VideoError(f"{self.path}: a {width}×{height} frame, larger than H.264 encodes ({MAX_SIDE:,} a "
                             "side; players take 8,192): a smaller --output-size")
        rate, enc = Fraction(self.fps / self.keep_every).limit_denominator(100000), self.encoding
        self._video = self._container.add_stream(enc.video, rate=rate)
        self._video.width, self._video.height = width + self._pad(width), height + self._pad(height)
        self._video.pix_fmt = enc.pix_fmt
        no_asm = {"x264-params": "no-asm=1"} if self.deterministic and enc is H264 else {}
        self._video.options = {**dict(enc.options), **no_asm}
        self._video.codec_context.time_base = Fraction(1) / rate
        if self.deterministic:  # else the encoder decides
            self._video.codec_context.thread_count = 1
        if self.audio_from is not None:
            self._add_audio_stream()
        self._size = (height, width)

    def _add_audio_stream(self) -> None:
        with _open(self.audio_from) as src:
            if not src.streams.audio:
                return
            a = src.streams.audio[0]
            rate = a.codec_context.sample_rate or a.rate or 44100
            layout = "stereo" if (a.codec_context.channels or len(a.layout.channels)) >= 2 else "mono"
        rates = av.Codec(self.encoding.audio, "w").audio_rates  # Opus: 48 kHz and a few below; None: any
        rate = rate if not rates or rate in rates else max(rates)
        self._audio = self._container.add_stream(self.encoding.audio, rate=rate, layout=layout)

    @property
    def keeps_audio(self) -> bool:
        """Whether the written file holds the audio it was given (a GIF holds none)."""
        return self._audio is not None

    def _pad(self, side: int) -> int:
        """Rows or columns added to a side: yuv420p needs even sizes (one replicated row/column); pal8 none."""
        return side % 2 if self.encoding.pix_fmt == "yuv420p" else 0

    def _frame(self, frame: np.ndarray) -> av.VideoFrame:
        """An RGB frame in the encoder's pixel format; for a GIF, the 256 colours that fit this frame (median cut: of
        Pillow's methods the closest on photos, 1.2 levels off on average on a face video, octree 2.4)."""
        if self.encoding.pix_fmt != "pal8":
            return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        indexed = Image.fromarray(frame).quantize(256, method=Image.Quantize.MEDIANCUT)
        rgb = np.zeros((256, 3), np.uint8)
        palette = np.asarray(indexed.getpalette(), np.uint8).reshape(-1, 3)[:256]
        rgb[:len(palette)] = palette
        argb = np.concatenate([np.full((256, 1), 255, np.uint8), rgb], axis=1)  # opaque
        return av.VideoFrame.from_ndarray((np.asarray(indexed), argb), format="pal8")

    def write(self, frame: np.ndarray) -> None:
        """Append one H×W×3 uint8 RGB frame; every frame must have the first frame's size."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise VideoError(f"{self.path}: frames must be H×W×3 uint8, got {frame.shape} {frame.dtype}")
        if self._size is None:
            self._start(frame.shape[0], frame.shape[1])
        elif frame.shape[:2] != self._size:
            raise VideoError(f"{self.path}: frame {self.num_frames} is {frame.shape[:2]}, expected {self._size}")
        index, self.num_frames = self.num_frames, self.num_frames + 1
        if index % self.keep_every:
            return
        rows, columns = self._pad(frame.shape[0]), self._pad(frame.shape[1])
        if rows or columns:
            frame = np.pad(frame, ((0, rows), (0, columns), (0, 0)), mode="edge")
        vf = self._frame(frame)
        vf.pts = index // self.keep_every
        vf.time_base = self._video.codec_context.time_base
        self._container.mux(self._video.encode(vf))

    def _write_audio(self) -> None:
        with _open(self.audio_from) as src:
            try:
                video = video_stream(src)
                v0 = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
                rate, layout = self._audio.codec_context.sample_rate, self._audio.codec_context.layout.name
                resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
                chunks, first_t = [], None
                for frame in src.decode(src.streams.audio[0]):
                    first_t = float(frame.time) if first_t is None and frame.time is not None else first_t
                    chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
                chunks.extend(out.to_ndarray() for out in resampler.resample(None))
            except av.FFmpegError as e:
                raise VideoError(f"{self.audio_from}: cannot decode its audio ({e})") from e
        if not chunks:
            return
        samples = np.concatenate(chunks, axis=1)  # C×N float32
        # align with the source's video: drop audio before the first video frame, pad silence if audio starts late
        offset = round((v0 - (first_t or 0.0)) * rate)
        samples = samples[:, offset:] if offset >= 0 else np.pad(samples, ((0, 0), (-offset, 0)))
        samples = samples[:, : round(self.num_frames / self.fps * rate)]  # the written duration
        # in the encoder's sample format, in frames of its size (AAC 1,024 planar floats; Opus 960 packed)
        out = av.AudioResampler(format=self._audio.codec_context.format.name, layout=layout, rate=rate,
                                frame_size=self._audio.codec_context.frame_size or 1024)
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
        af.sample_rate, af.pts, af.time_base = rate, 0, Fraction(1, rate)
        for chunk in [*out.resample(af), *out.resample(None)]:
            self._container.mux(self._audio.encode(chunk))
        self._container.mux(self._audio.encode(None))

    def _finish(self) -> None:
        if self._video is None:
            raise VideoError(f"{self.path}: no frames were written")
        self._container.mux(self._video.encode(None))
        if self._audio is not None:
            self._write_audio()
        self._container.close()
        self._container = None

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        try:
            if exc_type is None:
                self._finish()
        except BaseException as err:
            exc_type, exc, tb = type(err), err, err.__traceback__
            raise
        finally:
            if self._container is not None:
                with contextlib.suppress(av.FFmpegError):  # the file is being discarded anyway
                    self._container.close()
                self._container = None
            self._target.__exit__(exc_type, exc, tb)  # renamed onto path after a clean finish, else removed


def write_video(path: PathLike, frames: Iterable[np.ndarray], fps: float, audio_from: PathLike | None = None,
                deterministic: bool = False) -> Path:
    """Write T frames (H×W×3 uint8 RGB) to `path` atomically; returns the path."""
    with VideoWriter(path, fps, audio_from=audio_from, deterministic=deterministic) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)
