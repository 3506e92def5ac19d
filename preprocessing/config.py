"""PreprocessConfig: every knob of the raw-video → clip-shard job, as one frozen dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

KINDS = ("face", "person", "none")
RESIZE_MODES = ("pad", "stretch")


@dataclass(frozen=True, kw_only=True)
class PreprocessConfig:
    """How to turn raw videos into clips (defaults follow the paper's VoxCeleb / Tai-Chi-HD preparation)."""

    input: str  # folder, glob, metadata CSV (local or s3://), or "synthetic[:N]"
    output: str  # dataset root (local or s3://): shards/, _manifest.json, errors.parquet
    kind: str = "face"  # what to detect and track: face (VoxCeleb-like), person (Tai-Chi-like), none (full frame)
    size: int = 256  # clips are size×size
    workers: int | None = None  # concurrent video processors (default: the cluster's CPUs)
    detector: str = "auto"  # backend: auto, s3fd, haar, hog, none
    detect_every: int = 5  # run the detector on every N-th frame; tracks cover the frames between
    iou_threshold: float = 0.3  # a detection continues a track when their boxes overlap at least this much
    max_missed: int = 1  # detection rounds a track may miss before it ends
    cut_threshold: float = 0.3  # scene-cut score above which every track is split (≤ 0 disables)
    margin: float | None = None  # crop enlargement per side, × box size (default: face 0.3, person 0.1)
    min_frames: int = 32  # tracks shorter than this are dropped
    min_size: int = 64  # tracks whose boxes are smaller than this (source pixels, shorter side) are dropped
    max_clip_frames: int | None = None  # split longer tracks into clips of at most this many frames
    max_frames: int | None = None  # read only the first N frames of every video (quick looks, tests)
    target_fps: float | None = None  # resample every video to this frame rate (None keeps the source rate)
    resize_mode: str = "pad"  # pad keeps the aspect ratio; stretch fills the square
    frame_format: str = "jpeg"  # jpeg, png or webp (see shards.py for the measurement behind jpeg)
    quality: int = 95
    shard_bytes: int = 256 * 1024 * 1024  # target shard size
    test_fraction: float = 0.1  # share of videos put in the test split when the input does not say
    video_dir: str | None = None  # where a metadata CSV's raw videos are (default: the CSV's folder)
    endpoint: str | None = None  # S3 endpoint URL (default: FOMM_S3_ENDPOINT / AWS_ENDPOINT_URL)
    retry_errors: bool = False  # re-run videos listed in the error table
    max_buffer_bytes: int = 1 << 30  # decode once and keep frames when a video fits; else decode twice
    synthetic_videos: int = 12  # for input "synthetic": how many videos, their size and length
    synthetic_size: int = 64
    synthetic_frames: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.kind in KINDS, f"kind {self.kind!r}: expected one of {KINDS}"),
            (self.size >= 8, f"size {self.size}: must be ≥ 8"),
            (self.detect_every >= 1, f"detect_every {self.detect_every}: must be ≥ 1"),
            (0.0 < self.iou_threshold <= 1.0, f"iou_threshold {self.iou_threshold}: must be in (0, 1]"),
            (self.min_frames >= 1, f"min_frames {self.min_frames}: must be ≥ 1"),
            (self.resize_mode in RESIZE_MODES, f"resize_mode {self.resize_mode!r}: expected one of {RESIZE_MODES}"),
            (self.frame_format in ("jpeg", "png", "webp"), f"frame_format {self.frame_format!r}: jpeg, png or webp"),
            (self.shard_bytes > 0, f"shard_bytes {self.shard_bytes}: must be > 0"),
            (0.0 <= self.test_fraction <= 1.0, f"test_fraction {self.test_fraction}: must be in [0, 1]"),
            (self.workers is None or self.workers >= 1, f"workers {self.workers}: must be ≥ 1"),
            (self.max_clip_frames is None or self.max_clip_frames >= self.min_frames,
             f"max_clip_frames {self.max_clip_frames}: must be ≥ min_frames {self.min_frames}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"PreprocessConfig: {message}")

    @property
    def crop_margin(self) -> float:
        if self.margin is not None:
            return self.margin
        return {"face": 0.3, "person": 0.1}.get(self.kind, 0.0)

    @property
    def detector_backend(self) -> str:
        return "none" if self.kind == "none" else self.detector

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"PreprocessConfig: unknown key(s) {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes) -> PreprocessConfig:
        return dataclasses.replace(self, **changes)
