"""process_video: one raw video → clip records (decode → detect → track → crop → resize → encode), no Ray."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from preprocessing import cropping, shards
from preprocessing.config import PreprocessConfig
from preprocessing.detection import Detector, make_detector
from preprocessing.iou_tracks import CutDetector, IoUTracker, Track
from preprocessing.shards import ClipRecord
from preprocessing.sources import Segment, VideoTask, hash_split
from services.video_read import VideoError, VideoInfo, iter_frames_timed, probe_video


class StageError(Exception):
    """A video that failed in one stage of the pipeline; `stage` goes to the error table."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass
class ClipPlan:
    """A clip to cut: frames [start, end) of the (resampled) video, one crop box for all of them."""

    start: int
    end: int
    box: tuple[int, int, int, int]
    exact: bool = False  # a metadata-CSV box: crop it as given, without squaring


def iter_video(path: str, cfg: PreprocessConfig) -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) over the video, resampled to cfg.target_fps when set, cut at cfg.max_frames."""
    stop = cfg.max_frames
    if cfg.target_fps is None:
        yield from enumerate(frame for _, frame in iter_frames_timed(path, 0, stop))
        return
    k, step = 0, 1.0 / cfg.target_fps
    for t, frame in iter_frames_timed(path):  # each tick of the new clock takes the first frame at or after it
        while k * step <= t + 1e-6 and (stop is None or k < stop):
            yield k, frame  # a gap in a variable-rate video repeats the frame after it
            k += 1
        if stop is not None and k >= stop:
            return


def find_tracks(path: str, cfg: PreprocessConfig, detector: Detector,
                keep_frames: bool) -> tuple[list[Track], list[np.ndarray] | None]:
    """First pass: detections every cfg.detect_every frames, cuts, IoU tracks; the frames too if kept."""
    tracker = IoUTracker(cfg.iou_threshold, cfg.max_missed, step=cfg.detect_every)
    cuts = CutDetector(cfg.cut_threshold) if cfg.cut_threshold > 0 and cfg.kind != "none" else None
    kept: list[np.ndarray] | None = [] if keep_frames else None
    n = 0
    for i, frame in iter_video(path, cfg):
        n = i + 1
        if kept is not None:
            kept.append(frame)
        if cuts is not None and cuts.is_cut(frame):
            tracker.cut(i)
        if i % cfg.detect_every == 0:
            try:
                found = detector.detect(frame)  # N×5
            except cv2.error as e:
                raise StageError("detect", f"{path}: frame {i}: detector failed ({e})") from e
            tracker.update(i, found[:, :4])
    return tracker.finish(n), kept


def plan_track_clips(tracks: list[Track], cfg: PreprocessConfig, width: int, height: int) -> list[ClipPlan]:
    """Drop short or small tracks; one square crop per remaining track (split when over max_clip_frames)."""
    plans = []
    for track in tracks:
        if track.num_frames < cfg.min_frames or track.mean_side() < cfg.min_size:
            continue
        boxes = track.box_array()  # one crop for the whole track: the boxes' union, enlarged, squared in the frame
        union = (*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0))
        box = cropping.fit_square(cropping.enlarge_box(union, cfg.crop_margin), width, height)
        step = cfg.max_clip_frames or track.num_frames
        for s in range(track.start, track.end, step):
            e = min(s + step, track.end)
            if e - s >= cfg.min_frames:
                plans.append(ClipPlan(s, e, box))
    return plans


def plan_segment_clips(segments: list[Segment], info: VideoInfo, cfg: PreprocessConfig) -> list[ClipPlan]:
    """Clips exactly as a metadata CSV gives them: its frame range and bbox, rescaled to this video."""
    fps = cfg.target_fps or info.fps
    plans = []
    for seg in segments:
        sx = info.width / seg.width if seg.width else 1.0
        sy = info.height / seg.height if seg.height else 1.0
        left, top, right, bottom = seg.bbox
        box = tuple(int(v) for v in cropping.clip_box((left * sx, top * sy, right * sx, bottom * sy), info.width,
                                                      info.height))
        # frame i (at this video's fps) lies in the segment when its time i/fps is in [start, end)/seg.fps
        start, end = (int(np.ceil(f * fps / seg.fps - 1e-9)) for f in (seg.start, seg.end))
        if box[2] > box[0] and box[3] > box[1] and end > start:
            plans.append(ClipPlan(start, end, box, exact=True))  # type: ignore[arg-type]
    return plans


def cut_clips(frames: Iterator[tuple[int, np.ndarray]], plans: list[ClipPlan],
              cfg: PreprocessConfig) -> list[list[bytes]]:
    """Second pass: crop, resize and encode the frames of every planned clip."""
    encoded: list[list[bytes]] = [[] for _ in plans]
    last = max((p.end for p in plans), default=0)
    for i, frame in frames:
        if i >= last:
            break
        for k, plan in enumerate(plans):
            if plan.start <= i < plan.end:
                patch = cropping.resize_keep_aspect(cropping.crop(frame, plan.box), cfg.size)  # size×size×3
                encoded[k].append(shards.encode_frame(patch, cfg.frame_format, cfg.quality))
    return encoded


def detector_for(cfg: PreprocessConfig) -> Detector:
    """The detector a config asks for (kind none: the whole frame), tuned to the smallest object it keeps."""
    return make_detector(cfg.kind, "none" if cfg.kind == "none" else cfg.detector, min_face=cfg.min_size)


def process_video(path: str, cfg: PreprocessConfig, task: VideoTask | None = None,
                  detector: Detector | None = None) -> list[ClipRecord]:
    """All clips of one local video file (a local copy of `task.path`, if given). Raises StageError (stage:
    probe/decode/detect/crop/encode)."""
    if task is None:  # a file on its own: its name is the video and the person
        name = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        task = VideoTask(video_id=name, path=path, person_id=name, split=hash_split(name, cfg.test_fraction))
    try:
        info = probe_video(path)
    except VideoError as e:
        raise StageError("probe", str(e)) from e
    fps = cfg.target_fps or info.fps
    try:
        if task.segments:
            plans = plan_segment_clips(task.segments, info, cfg)
            frames: Iterator[tuple[int, np.ndarray]] = iter_video(path, cfg)
        else:
            n_est = min(info.num_frames, cfg.max_frames or info.num_frames)
            keep = n_est * info.width * info.height * 3 <= cfg.max_buffer_bytes
            detector = detector or detector_for(cfg)
            tracks, kept = find_tracks(path, cfg, detector, keep)
            plans = plan_track_clips(tracks, cfg, info.width, info.height)
            frames = enumerate(kept) if kept is not None else iter_video(path, cfg)
        encoded = cut_clips(frames, plans, cfg)
    except VideoError as e:
        raise StageError("decode", str(e)) from e
    except (cv2.error, ValueError) as e:
        raise StageError("crop", f"{path}: {e}") from e
    records = []
    for k, (plan, frames_bytes) in enumerate(zip(plans, encoded)):
        if len(frames_bytes) < (1 if plan.exact else cfg.min_frames):
            continue  # the video ended before the clip did (CSV ranges past the end, max_frames)
        end = plan.start + len(frames_bytes)
        records.append(ClipRecord(
            video_id=task.video_id, clip_id=f"{task.video_id}#{k:03d}#{plan.start:06d}#{end:06d}",
            person_id=task.person_id, split=task.split, fps=float(fps), height=cfg.size, width=cfg.size,
            start_frame=plan.start, end_frame=end, crop_box=plan.box, source_path=task.path,
            source_height=info.height, source_width=info.width, frames=frames_bytes, frame_format=cfg.frame_format,
        ))
    return records
