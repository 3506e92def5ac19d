"""Output frames of `fomm animate` and the batch job: the result, or source | driving | result; without a crop plan
what the model sees at `output_size`, with one the whole frames and the pasted-back (or bare) crop."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import tee

import cv2
import numpy as np

from animate.crop_plan import CropPlan, crop_subpixel
from animate.options import LAYOUTS
from animate.paste import even_frame, fit_frame, paste_back
from evaluation.visualize import draw_styled_kp
from fomm.animator import Animator, AnimatorError, to_uint8
from preprocessing.cropping import resize_keep_aspect


def join_panels(panels: Sequence[np.ndarray]) -> np.ndarray:
    """Panels of equal height (H×Wi×3 uint8) joined left to right.  # H×ΣWi×3"""
    heights = {p.shape[0] for p in panels}
    if len(heights) != 1:
        raise ValueError(f"panels must share one height, got {sorted(heights)}")
    return np.concatenate([np.asarray(p, dtype=np.uint8) for p in panels], axis=1)


def three_panels(source: np.ndarray, driving: np.ndarray, result: np.ndarray, height: int) -> np.ndarray:
    """source | driving | result at one even height, each keeping its aspect ratio (even widths)."""
    panels = []
    for image in (source, driving, result):
        h, w = image.shape[:2]
        pw = max(2, int(round(w * height / h / 2)) * 2)
        interp = cv2.INTER_AREA if height < h else cv2.INTER_CUBIC
        panels.append(image if (h, w) == (height, pw) else cv2.resize(image, (pw, height), interpolation=interp))
    return join_panels(panels)


def render(animator: Animator, source: np.ndarray, driving: Iterable[np.ndarray], *, layout: str = "result",
           draw_kp: bool = False, output_size: tuple[int, int] | None = None,
           driving_initial: np.ndarray | None = None, plan: CropPlan | None = None,
           paste: bool = True) -> Iterator[np.ndarray]:
    """Output frames, H×W×3 uint8, streamed as the driving frames are (see the module's docstring)."""
    if layout not in LAYOUTS:
        raise AnimatorError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    side = layout == "side-by-side"
    if plan is None:
        size = tuple(output_size) if output_size is not None else animator.frame_size
        scale = min(size) / min(animator.frame_size)  # keypoints drawn at `size`: kp_size scaled from the model's
        state = animator.encode_source(source)
        source_panel = to_uint8(state.image, size)[0]
        if draw_kp:
            source_panel = draw_styled_kp(source_panel, state.kp["value"][0].cpu().numpy(), animator.visualizer,
                                          scale)
        batches = animator.animate(state, driving, driving_initial)
    else:
        size, full, scale = None, even_frame(source), 1.0  # keypoints drawn on the model's crop
        canvas, pasted_box = fit_frame(full, plan.source_box, output_size) if paste else (None, None)
        # side-by-side panels: --output-size's height, else the source's, ≤ 512, even
        height = output_size[0] if output_size else max(2, min(full.shape[0], 512) // 2 * 2)
        driving, originals = tee(driving) if side else (driving, None)  # originals: ≤ a batch ahead of the output
        crops = (crop_subpixel(frame, box, animator.frame_size) for frame, box in zip(driving, plan.driving_boxes))
        batches = animator.animate(crop_subpixel(full, plan.source_box, animator.frame_size), crops,
                                   driving_initial=driving_initial)
    for batch in batches:
        for i in range(len(batch.prediction)):  # one frame at a time: a batch of 8192² frames was 8 GB as float
            result = to_uint8(batch.prediction[i:i + 1], size)[0]
            if draw_kp:
                result = draw_styled_kp(result, batch.kp_norm["value"][i].cpu().numpy(), animator.visualizer,
                                        scale)
            if plan is not None and paste:
                result = paste_back(canvas, result, pasted_box)
            elif plan is not None and output_size is not None:
                result = resize_keep_aspect(result, output_size)
            if not side:
                yield result
            elif plan is not None:
                yield three_panels(full if canvas is None else canvas, next(originals), result, height)
            else:
                panel = to_uint8(batch.driving[i:i + 1], size)[0]
                if draw_kp:
                    panel = draw_styled_kp(panel, batch.kp_driving["value"][i].cpu().numpy(), animator.visualizer,
                                           scale)
                yield join_panels([source_panel, panel, result])
