"""Crop geometry against boxes worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from preprocessing.cropping import (
    clip_box,
    crop,
    enlarge_box,
    fit_square,
    resize_keep_aspect,
)


def test_enlarge_square_clip_by_hand():
    # 20 wide, 40 tall; 10% margin moves x by 2 and y by 4 on each side
    assert enlarge_box((10, 20, 30, 60), 0.1) == pytest.approx((8, 16, 32, 64))
    # a 20×40 box becomes 40×40 about its centre (20, 40)
    assert fit_square((10, 20, 30, 60), 100, 80) == (0, 20, 40, 60)
    assert clip_box((-5, -3, 120, 80), 100, 50) == (0, 0, 100, 50)


def test_fit_square_shifts_into_the_frame_instead_of_shrinking():
    # a 40×40 square centred near the right edge of a 100×80 frame is shifted left, not cut
    assert fit_square((70, 20, 110, 60), 100, 80) == (60, 20, 100, 60)
    # near the top-left corner: shifted right and down
    assert fit_square((-10, -5, 20, 25), 100, 80) == (0, 0, 30, 30)
    # larger than the frame's short side: capped at it (80) and centred, then kept inside
    assert fit_square((0, 0, 100, 80), 100, 80) == (10, 0, 90, 80)


def test_track_crop_by_hand():
    # a track's union (40, 30, 60, 70): 20×40; margin 0.25 → (35, 20, 65, 80): 30×60; square 60 → (20, 20, 80, 80)
    box = fit_square(enlarge_box((40, 30, 60, 70), 0.25), 200, 100)
    assert box == (20, 20, 80, 80)
    assert box[0] <= 40 and box[1] <= 30 and box[2] >= 60 and box[3] >= 70  # the union lies inside


@pytest.mark.parametrize("box", [(0, 0, 37, 37), (63, 40, 100, 80), (5, 10, 45, 50)])
def test_fit_square_is_square_and_inside(box):
    x0, y0, x1, y1 = fit_square(box, 100, 80)
    assert x1 - x0 == y1 - y0 > 0
    assert 0 <= x0 and 0 <= y0 and x1 <= 100 and y1 <= 80


def test_crop_is_a_slice_and_clips():
    frame = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    np.testing.assert_array_equal(crop(frame, (1, 2, 4, 5)), frame[2:5, 1:4])
    np.testing.assert_array_equal(crop(frame, (-2, -1, 3, 2)), frame[0:2, 0:3])
    with pytest.raises(ValueError, match="outside"):
        crop(frame, (10, 10, 20, 20))


def test_resize_keep_aspect_pads_the_short_side():
    image = np.full((10, 20, 3), 200, np.uint8)  # 2:1
    out = resize_keep_aspect(image, 8)  # → 4×8 content, 2 rows of padding above and below
    assert out.shape == (8, 8, 3)
    assert (out[2:6] == 200).all() and (out[:2] == 0).all() and (out[6:] == 0).all()
    square = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    assert resize_keep_aspect(square, 16) is not None
    np.testing.assert_array_equal(resize_keep_aspect(square, 16), square)  # same size: unchanged
    up = resize_keep_aspect(np.full((4, 4, 3), 77, np.uint8), 12)  # enlarging a flat image stays flat
    assert up.shape == (12, 12, 3) and (up == 77).all()
