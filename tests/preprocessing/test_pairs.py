"""Frame-pair sampling, epochs (num_repeats, id_sampling) and paired augmentation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fomm.config.schema import AugmentationParams
from preprocessing.pairs import augment_pair, jitter_colour, sample_pair

ORIGINAL = AugmentationParams.from_dict({"flip_param": {"horizontal_flip": True, "time_flip": True},  # vox-256's
                                        "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1}})
FLIPS_ONLY = AugmentationParams.from_dict({"flip_param": {"horizontal_flip": True, "time_flip": True}})


def test_sample_pair_is_sorted_uniform_with_replacement():
    rng = np.random.default_rng(0)
    pairs = np.array([sample_pair(4, rng) for _ in range(8000)])
    assert (pairs[:, 0] <= pairs[:, 1]).all() and pairs.min() == 0 and pairs.max() == 3
    # with replacement: P(i == j) = 1/4; sorted: P(i = 0) = 1 − (3/4)² = 7/16
    assert np.mean(pairs[:, 0] == pairs[:, 1]) == pytest.approx(0.25, abs=0.02)
    assert np.mean(pairs[:, 0] == 0) == pytest.approx(7 / 16, abs=0.02)
    assert sample_pair(1, rng) == (0, 0)
    with pytest.raises(ValueError, match="0 frames"):
        sample_pair(0, rng)


def test_augmentation_is_identical_on_both_frames():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    for seed in range(20):
        a, b = augment_pair(frame, frame.copy(), np.random.default_rng(seed), ORIGINAL)
        np.testing.assert_array_equal(a, b)  # same frame in, same frame out: the draw is shared


def test_flip_and_time_flip_without_jitter():
    src, drv = np.zeros((2, 3, 3), np.uint8), np.ones((2, 3, 3), np.uint8)
    src[0, 0] = 9
    params = FLIPS_ONLY
    seen = set()
    for seed in range(40):
        a, b = augment_pair(src, drv, np.random.default_rng(seed), params)
        swapped = a.max() == 1
        first = b if swapped else a
        flipped = first[0, 2, 0] == 9
        assert first[0, 0 if not flipped else 2, 0] == 9
        seen.add((swapped, flipped))
    assert seen == {(False, False), (False, True), (True, False), (True, True)}
    for none in (None, AugmentationParams()):  # no section: no augmentation
        a, b = augment_pair(src, drv, np.random.default_rng(0), none)
        np.testing.assert_array_equal(a, src)


def test_hue_shift_by_hand():
    red = np.zeros((1, 1, 3))
    red[..., 0] = 1.0
    green = jitter_colour(red, {"hue": 1 / 3}, ["hue"])
    np.testing.assert_allclose(green[0, 0], [0, 1, 0], atol=1e-6)  # colour jitter computes in float32
    grey = np.full((1, 1, 3), 0.5)
    np.testing.assert_allclose(jitter_colour(grey, {"hue": 0.1}, ["hue"]), grey)  # no hue to turn
    np.testing.assert_allclose(jitter_colour(grey, {"brightness": 1.2}, ["brightness"]), 0.6)
    two = np.array([[[0.2, 0.2, 0.2], [0.6, 0.6, 0.6]]])  # mean 0.4: contrast 0.5 pulls both halfway to it
    np.testing.assert_allclose(jitter_colour(two, {"contrast": 0.5}, ["contrast"]), [[[0.3] * 3, [0.5] * 3]])


def test_params_from_the_original_yaml_section():
    p = AugmentationParams.from_dict({"flip_param": {"horizontal_flip": True, "time_flip": False},
                                      "jitter_param": {"brightness": 0.2, "hue": 0.05}})
    assert (p.flips.time_flip, p.flips.horizontal_flip) == (False, True)
    assert p.jitter == {"brightness": 0.2, "contrast": 0.0, "saturation": 0.0, "hue": 0.05}  # absent: no jitter
    with pytest.raises(ValueError, match="unknown key 'brigthness'"):
        AugmentationParams.from_dict({"jitter_param": {"brigthness": 0.1}})


def test_augmentation_of_a_loaded_config(repo_root):
    from fomm.config.schema import FommConfig, load_config

    aug = load_config(repo_root / "configs" / "vox-256.yaml").dataset_params.augmentation_params
    assert aug == ORIGINAL
    bare = FommConfig.from_dict({"dataset_params": {"augmentation_params": {"flip_param": {"time_flip": True}}}})
    aug = bare.dataset_params.augmentation_params
    assert (aug.flips.horizontal_flip, aug.flips.time_flip) == (False, True) and set(aug.jitter.values()) == {0.0}


def test_hue_shift_agrees_with_matplotlib_on_random_colours():
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    rgb = np.random.default_rng(3).random((16, 16, 3))
    for shift in (0.07, -0.1, 0.5):
        hsv = rgb_to_hsv(rgb)
        hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
        np.testing.assert_allclose(jitter_colour(rgb, {"hue": shift}, ["hue"]), hsv_to_rgb(hsv), atol=2e-6)


def test_uint8_augmentation_matches_the_float_path_to_one_level():
    """uint8 frames against the same frames as [0, 1] floats, with the same draw: rounding only."""
    frame = np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for seed in range(10):
        a, _ = augment_pair(frame, frame, np.random.default_rng(seed), ORIGINAL)
        ref, _ = augment_pair(frame / 255.0, frame / 255.0, np.random.default_rng(seed), ORIGINAL)
        assert np.abs(a.astype(int) - np.floor(ref * 255 + 0.5).astype(int)).max() <= 1


def test_zoom_and_crop_as_the_original_mgif_config_draws_them():
    """resize_param then crop_param (mgif-256.yaml): one zoom and one window for both frames, the crop's size out."""
    from fomm.config.schema import CropParams, ResizeParams

    ramp = np.add.outer(np.arange(8), 10 * np.arange(8)).astype(np.uint8)  # value = row + 10·column
    frame = np.repeat(ramp[:, :, None], 3, axis=2)
    zoom2 = AugmentationParams(resize_param=ResizeParams(ratio=(2.0, 2.0)), crop_param=CropParams(size=(8, 8)))
    for seed in range(5):
        a, b = augment_pair(frame, frame.copy(), np.random.default_rng(seed), zoom2)
        assert a.shape == (8, 8, 3) and np.array_equal(a, b)  # the same window of the same 16×16 zoom
        zoomed = cv2.resize(frame, (16, 16), interpolation=cv2.INTER_LINEAR)
        assert any(np.array_equal(a, zoomed[y:y + 8, x:x + 8]) for y in range(9) for x in range(9))
    pad = AugmentationParams(resize_param=ResizeParams(ratio=(1.0, 1.0)), crop_param=CropParams(size=(12, 10)))
    a, _ = augment_pair(frame, frame, np.random.default_rng(0), pad)  # larger than the frame: edge-padded round it
    assert a.shape == (12, 10, 3) and np.array_equal(a[2:10, 1:9], frame)
    assert np.array_equal(a[0, 1:9], frame[0]) and np.array_equal(a[:, 0], a[:, 1])
    with pytest.raises(ValueError, match=r"ratio must be \[low, high\], got \[1.1, 0.9\]"):
        ResizeParams(ratio=(1.1, 0.9))
