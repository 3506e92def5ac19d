"""PreprocessConfig: every knob of the raw-video → clip-shard job, as one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.fields import FieldError, check_fields, rule

KINDS = ("face", "person", "none")
FRAME_FORMATS = ("jpeg", "png", "webp")
DETECTORS = ("auto", "s3fd", "haar", "hog", "none")  # preprocessing.detection's backends, or auto


@dataclass(frozen=True, kw_only=True)
class PreprocessConfig:
    """How to turn raw videos into clips (defaults follow the paper's VoxCeleb / Tai-Chi-HD preparation)."""

    input: str = field(metadata=rule("folder, glob, metadata CSV (VoxCeleb/Tai-Chi-HD) or synthetic[:N]"))
    output: str = field(metadata=rule("dataset root, local or s3:// (shards/, _manifest.json, errors.parquet)"))
    # what to detect and track: face (VoxCeleb-like), person (Tai-Chi-like), none (full frame)
    kind: str = field(default="face", metadata=rule("what to detect and crop", choices=KINDS))
    size: int = field(default=256, metadata=rule("clip frames are SIZE×SIZE", ge=8))
    workers: int | None = field(default=None, metadata=rule("parallel video processors (default: all CPUs)", ge=1))
    detector: str = field(default="auto", metadata=rule("face/person detector backend", choices=DETECTORS))
    detect_every: int = field(default=5, metadata=rule(  # tracks cover the frames between
        "detect on every N-th frame", ge=1))
    # a detection continues a track when their boxes overlap at least this much
    iou_threshold: float = field(default=0.3, metadata=rule(gt=0, le=1))
    max_missed: int = field(default=1, metadata=rule(ge=0))  # detection rounds a track may miss before it ends
    cut_threshold: float = field(default=0.3, metadata=rule())  # scene-cut score above which tracks split (≤ 0: off)
    margin: float | None = field(default=None, metadata=rule(  # default: face 0.3, person 0.1
        "crop enlargement per side (× box size)", ge=0, le=10))
    min_frames: int = field(default=32, metadata=rule("drop tracks shorter than this", ge=1))
    min_size: int = field(default=64, metadata=rule(  # shorter side
        "drop tracks smaller than this (source pixels)", ge=0))
    max_clip_frames: int | None = field(default=None, metadata=rule("split longer tracks into clips", ge=1))
    max_frames: int | None = field(default=None, metadata=rule(  # quick looks, tests
        "read only the first N frames of each video", ge=1))
    target_fps: float | None = field(default=None, metadata=rule(  # None keeps the source rate
        "resample videos to this frame rate", gt=0, le=1000, flag="--fps"))
    frame_format: str = field(default="jpeg", metadata=rule(  # see shards.py for the measurement behind jpeg
        "how the shards store each frame", choices=FRAME_FORMATS))
    quality: int = field(default=95, metadata=rule(ge=1, le=100))
    shard_bytes: int = field(default=256 * 1024 * 1024, metadata=rule(ge=1))  # target shard size
    test_fraction: float = field(default=0.1, metadata=rule(
        "when the input has no split: each video goes to test with this chance, drawn from a hash of its id (stable "
        "across reruns; a small set can stray from the share)", ge=0, le=1))
    video_dir: str | None = field(default=None, metadata=rule(
        "raw videos of a metadata CSV (default: the CSV's folder)"))
    endpoint: str | None = field(default=None, metadata=rule(
        "S3 endpoint URL (default: FOMM_S3_ENDPOINT/AWS_ENDPOINT_URL)"))
    retry_errors: bool = field(default=False, metadata=rule("re-run videos listed in the error table"))
    max_buffer_bytes: int = 1 << 30  # decode once and keep frames when a video fits; else decode twice
    synthetic_videos: int = field(default=12, metadata=rule(ge=1))  # input "synthetic": how many, size, length
    synthetic_size: int = field(default=64, metadata=rule(ge=8))
    synthetic_frames: int = field(default=48, metadata=rule(ge=1))
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)  # the declared rules; then the one that relates two fields
        if self.max_clip_frames is not None and self.max_clip_frames < self.min_frames:
            raise FieldError(f"--max-clip-frames {self.max_clip_frames}: must be ≥ --min-frames {self.min_frames}")

    @property
    def crop_margin(self) -> float:
        return self.margin if self.margin is not None else {"face": 0.3, "person": 0.1}.get(self.kind, 0.0)
