"""Real photos and videos, as they come: auto-crop, animate the crop, paste it back into the full frame.

Three passes over the driving video (decoded again each time, memory stays flat): track the subject, (with
best-frame) landmarks on the crops, then animate (`animate.render` composes the frames): `auto_crop_frames`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animate.backends import BackendUnavailable, Landmarker, best_frame, subject_detector, subject_kind
from animate.crop_plan import CropPlan, crop_subpixel, plan_crops
from animate.paste import even_frame
from animate.render import render
from fomm.animator import Animator, AnimatorError
from services.video_read import iter_frames


@dataclass(frozen=True)
class AutoCropOptions:
    """What `--crop auto` does: which subject, paste back or not, how much smoothing (0: none)."""

    kind: str = "face"  # face | person (animate.backends.subject_kind of the config)
    subject: int | None = None  # counted from the left; None: the largest
    paste_back: bool = True
    smooth: float = 0.0  # one-euro time constant at rest, frames, of the crop box (keypoints: Animator.smooth)
    detector: str = "auto"  # preprocessing detector backend


def resolve_crop(config, crop: str | None, *, subject: int | None = None, paste_back: bool = True,  # noqa: ANN001
                 smooth: float = 0.0, detector: str = "auto",
                 kind: str | None = None) -> tuple[str, AutoCropOptions | None]:
    """The crop mode (None: auto where a detector for the config's subject runs here, else center) and,
    for auto, its options.  config: fomm.config.FommConfig; kind: --subject-kind (default: the config's)"""
    kind = subject_kind(config, kind)
    if crop in (None, "auto"):
        try:
            subject_detector(kind, detector)
            crop = "auto"
        except BackendUnavailable as err:
            if crop == "auto":
                raise AnimatorError(f"--crop auto: {err}") from None
            crop = "center"
    if crop != "auto":
        if subject is not None:
            raise AnimatorError(f"--subject needs --crop auto (got --crop {crop})")
        return crop, None
    return crop, AutoCropOptions(kind=kind, subject=subject, paste_back=paste_back, smooth=smooth, detector=detector)


def best_initial_frame(animator: Animator, source: np.ndarray, driving: Iterable[np.ndarray], plan: CropPlan,
                       landmarks: Landmarker, source_name: str, driving_name: str) -> int:
    """Driving frame (among those where the subject was found) whose crop's landmarks best match the source's."""
    size = animator.frame_size
    crops = (crop_subpixel(f, box, size) if found else None
             for f, box, found in zip(driving, plan.driving_boxes, plan.driving_found))
    return best_frame(landmarks, crop_subpixel(even_frame(source), plan.source_box, size), crops, source_name,
                      driving_name)


def auto_crop_frames(animator: Animator, source: np.ndarray, source_path: str | Path, driving: str | Path,
                     num_frames: int, options: AutoCropOptions, *, layout: str = "result", draw_kp: bool = False,
                     output_size: tuple[int, int] | None = None, landmarks: Landmarker | None = None,
                     ) -> tuple[Iterator[np.ndarray], int | None, list[str]]:
    """The output frames of a driving video file, the best initial frame (with `landmarks`) and notes naming
    the detector used."""
    detector = subject_detector(options.kind, options.detector)
    plan = plan_crops(source, iter_frames(driving, expected=num_frames), detector, options.kind, subject=options.subject,
                      smooth=options.smooth, source_name=str(source_path), driving_name=str(driving))
    notes = [f"auto-crop: {options.kind} detector {plan.detector}, subject detected on "
             f"{int(plan.driving_found.sum())} of the {len(plan.driving_found)} driving frames "
             f"(searched every {plan.detect_every}), crop smoothing {options.smooth:g}"]
    best, initial = None, None
    if landmarks is not None:
        best = best_initial_frame(animator, source, iter_frames(driving), plan, landmarks, str(source_path),
                                  str(driving))
        frame = next(iter_frames(driving, best, best + 1))
        initial = crop_subpixel(frame, plan.driving_boxes[best], animator.frame_size)
    frames = render(animator, source, iter_frames(driving, expected=num_frames), layout=layout, draw_kp=draw_kp,
                    output_size=output_size, driving_initial=initial, plan=plan, paste=options.paste_back)
    return frames, best, notes
