"""Writing video with PyAV: RGB frames encoded atomically (temporary file, then rename), a video's audio alongside."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from services.atomic import atomic_path
from services.video_read import PathLike, VideoError, _open

MAX_SIDE = 16384  # the largest frame side libx264 encodes


class VideoWriter:
    """H.264 (crf 18) written atomically, with `audio_from`'s audio (from its first video frame, trimmed) as AAC;
    `deterministic`: byte-identical files, one thread and x264's C code (its SIMD reads unwritten memory; 3× slower);
    without `replace`, a file that took `path`'s name while it was written stays (services.atomic.MadeMeanwhileError)."""

    def __init__(self, path: PathLike, fps: float, audio_from: PathLike | None = None,
                 deterministic: bool = False, replace: bool = True) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        if self.fps <= 0:
            raise VideoError(f"{self.path}: fps must be positive, got {fps}")
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.deterministic, self.replace = deterministic, replace
        self.num_frames = 0
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
        rate = Fraction(self.fps).limit_denominator(100000)
        self._video = self._container.add_stream("libx264", rate=rate)
        # yuv420p needs even sizes: odd frames get one replicated row/column
        self._video.width, self._video.height = width + width % 2, height + height % 2
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": "18", **({"x264-params": "no-asm=1"} if self.deterministic else {})}
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
        self._audio = self._container.add_stream("aac", rate=rate, layout=layout)

    def write(self, frame: np.ndarray) -> None:
        """Append one H×W×3 uint8 RGB frame; every frame must have the first frame's size."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise VideoError(f"{self.path}: frames must be H×W×3 uint8, got {frame.shape} {frame.dtype}")
        if self._size is None:
            self._start(frame.shape[0], frame.shape[1])
        elif frame.shape[:2] != self._size:
            raise VideoError(f"{self.path}: frame {self.num_frames} is {frame.shape[:2]}, expected {self._size}")
        if frame.shape[0] % 2 or frame.shape[1] % 2:
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self.num_frames
        vf.time_base = self._video.codec_context.time_base
        self._container.mux(self._video.encode(vf))
        self.num_frames += 1

    def _write_audio(self) -> None:
        with _open(self.audio_from) as src:
            try:
                v0 = src.streams.video[0].start_time
                v0 = float(v0 * src.streams.video[0].time_base) if v0 is not None else 0.0
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
        step = self._audio.codec_context.frame_size or 1024
        for i in range(0, samples.shape[1], step):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + step]), format="fltp", layout=layout)
            af.sample_rate, af.pts, af.time_base = rate, i, Fraction(1, rate)
            self._container.mux(self._audio.encode(af))
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
