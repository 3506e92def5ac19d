"""Animator, frame fitting, keypoint drawing and best-frame selection: hand-computed values and invariants."""

import copy
import itertools

import numpy as np
import pytest
import torch

from animate.render import join_panels, render
from evaluation.visualize import colormap_colors
from fomm.animation import find_best_frame, normalize_landmarks
from fomm.animator import Animator, AnimatorError, fit_frames, frames_to_tensor, to_uint8
from fomm.checkpoint import checkpoint_bytes
from fomm.config.loader import ConfigError
from fomm.config.schema import VisualizerParams
from fomm.visualization import draw_keypoints, keypoint_colors, keypoints_to_pixels

pytestmark = pytest.mark.numeric


@pytest.fixture(scope="module")
def animator(tiny_config_path) -> Animator:
    torch.set_num_threads(1)
    return Animator.from_config(tiny_config_path, random_init=True, seed=0, batch_size=4)


def random_frames(n: int, h: int = 48, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- frames in and out


def test_frames_to_tensor_scales_each_dtype_and_layout():
    rgb = np.array([[[255, 0, 51]]], dtype=np.uint8)  # 1×1×3
    assert frames_to_tensor(rgb).flatten().tolist() == pytest.approx([1.0, 0.0, 0.2])
    grey16 = np.array([[65535, 0]], dtype=np.uint16)  # 1×2 greyscale, 16-bit
    x = frames_to_tensor(grey16)
    assert x.shape == (1, 3, 1, 2) and x[0, :, 0, 0].tolist() == [1, 1, 1] and x[0, :, 0, 1].tolist() == [0, 0, 0]
    rgba = np.array([[[0, 0, 0, 0], [0, 0, 0, 255]]], dtype=np.uint8)  # transparent black → white; opaque stays
    x = frames_to_tensor(rgba)
    assert x[0, :, 0, 0].tolist() == [1, 1, 1] and x[0, :, 0, 1].tolist() == [0, 0, 0]
    assert torch.equal(frames_to_tensor(torch.full((3, 2, 2), 255, dtype=torch.uint8)), torch.ones(1, 3, 2, 2))


def test_fit_frames_center_crop_pad_and_stretch():
    x = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 3, 4, 8) / 10  # column j holds j/10
    center = fit_frames(x, (4, 4), "center")
    assert center[0, 0, 0].tolist() == pytest.approx([0.2, 0.3, 0.4, 0.5])  # central columns 2..5, no resize
    padded = fit_frames(x, (8, 8), "pad")  # 4×8 → 8×8: two black rows above and below
    assert padded[0, 0, :2].abs().sum() == 0 and padded[0, 0, 6:].abs().sum() == 0
    assert torch.equal(padded[0, :, 2:6], x[0])
    assert fit_frames(x, (6, 2), "none").shape == (1, 3, 6, 2)
    with pytest.raises(AnimatorError, match="crop must be one of"):
        fit_frames(x, (4, 4), "zoom")


def test_a_frame_above_16_mp_is_fitted_as_uint8_within_a_grey_level_of_the_float_path(animator):
    """Made float whole, a 1,000 MP photo took 24 GB (the OOM killer ended the run); above LARGE_FRAME_PIXELS a
    frame is cropped and resized as uint8 first, rounded once. Smaller frames take the float path unchanged."""
    from fomm.animator import LARGE_FRAME_PIXELS, shrink_large

    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (4400, 4160, 3), dtype=np.uint8)  # 18.3 MP
    assert big.shape[0] * big.shape[1] > LARGE_FRAME_PIXELS
    big.flags.writeable = False  # as PIL gives it: read, never written
    for crop in ("center", "pad", "none"):
        fitted = shrink_large(big, (64, 64), crop)
        assert fitted.shape == (1, 64, 64, 3) and fitted.dtype == np.uint8
        exact = fit_frames(frames_to_tensor(big), (64, 64), crop)
        assert (frames_to_tensor(fitted) - exact).abs().max() <= 1 / 255
    small = big[:2000, :2000]
    assert shrink_large(small, (64, 64)) is small
    exact = fit_frames(frames_to_tensor(big), (64, 64), animator.crop)
    assert (animator.prepare(big) - exact).abs().max() <= 1 / 255
    [batch] = animator.animate(animator.encode_source(small), [big, big])  # driving frames too (an 8K video's:
    assert (batch.driving - exact).abs().max() <= 1 / 255  # 8.2 GB and 31 s for 24 frames, now 2.8 GB and 7 s)


def test_to_uint8_rounds_and_clamps():
    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8(x)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


# ---------------------------------------------------------------- drawing


def test_keypoints_map_to_the_model_grid_and_discs_are_drawn():
    assert keypoints_to_pixels(np.array([[-1, -1], [1, 1], [0, 0]]), 5, 9).tolist() == [[0, 0], [8, 4], [4, 2]]
    image = np.zeros((5, 5, 3), np.uint8)
    out = draw_keypoints(image, np.array([[0.0, 0.0]]))  # radius 1 (the least), keypoint 0 red
    red = (out == [255, 0, 0]).all(axis=2)
    expected = np.zeros((5, 5), bool)
    expected[2, 1:4] = expected[1:4, 2] = True  # centre (2, 2) and its 4 neighbours; diagonals are √2 away
    assert np.array_equal(red, expected)
    assert image.sum() == 0  # input untouched
    # hues 0°, 150°, 300°: red, spring green (blue at half), magenta
    assert keypoint_colors(3).tolist() == [[255, 0, 0], [0, 255, 128], [255, 0, 255]]
    assert join_panels([image, out, image]).shape == (5, 15, 3)
    with pytest.raises(ValueError, match="one height"):
        join_panels([image, np.zeros((4, 5, 3), np.uint8)])


# ---------------------------------------------------------------- best frame (pure part)


def test_normalize_landmarks_removes_shift_and_scale():
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], dtype=float)  # area 4 → divide by 2 after centring
    assert normalize_landmarks(square).tolist() == [[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]
    assert np.allclose(normalize_landmarks(square * 7.5 + [100, -3]), normalize_landmarks(square))


def test_find_best_frame_skips_frames_without_a_face():
    source = np.array([[0, 0], [4, 0], [4, 2], [0, 2], [2, 1]], dtype=float)  # a wide rectangle + centre
    tall = source[:, ::-1].copy()  # the same shape turned: a tall rectangle
    skewed = source + np.array([[0, 0], [0, 0], [1, 0], [1, 0], [0.5, 0]])
    matching = source * 3 + [50, 60]  # same pose, other place and size
    frames = [tall, None, skewed, matching, None, tall]
    assert find_best_frame(source, frames) == 3
    assert find_best_frame(source, [None, skewed, tall]) == 1  # skew is closer to the source than a turn
    with pytest.raises(ValueError, match="no face found in any of the 2"):
        find_best_frame(source, [None, None])


# ---------------------------------------------------------------- animator


def captured_generator_inputs(animator: Animator) -> tuple[list, torch.utils.hooks.RemovableHandle]:
    calls: list = []

    def hook(module, args, kwargs):  # noqa: ANN001
        calls.append({k: {n: t.clone() for n, t in kwargs[k].items()} for k in ("kp_driving", "kp_source")})

    return calls, animator.generator.register_forward_pre_hook(hook, with_kwargs=True)


def test_relative_motion_feeds_the_source_keypoints_for_the_initial_frame(animator):
    frames = random_frames(6)
    calls, handle = captured_generator_inputs(animator)
    try:
        batches = list(animator.animate(frames[0], frames))
    finally:
        handle.remove()
    kp_source = animator.encode_source(frames[0]).kp
    first = calls[0]["kp_driving"]
    assert torch.allclose(first["value"][0], kp_source["value"][0], atol=1e-6)
    assert torch.allclose(first["jacobian"][0], kp_source["jacobian"][0], atol=1e-5)
    # and what the generator got is what the Animator reports, frame for frame
    assert torch.equal(torch.cat([c["kp_driving"]["value"] for c in calls]),
                       torch.cat([b.kp_norm["value"] for b in batches]))
    assert [b.start for b in batches] == [0, 4] and batches[1].prediction.shape == (2, 3, 64, 64)


def test_relative_motion_is_the_driving_motion_added_to_the_source(tiny_config_path):
    animator = Animator.from_config(tiny_config_path, random_init=True, adapt_movement_scale=False, batch_size=3)
    source, frames = random_frames(1, seed=1)[0], random_frames(5, seed=2)
    kp_source = animator.encode_source(source).kp["value"]
    kp_initial = animator.detect(frames[2])["value"]
    batches = list(animator.animate(source, frames, driving_initial=frames[2]))
    kp_driving = torch.cat([b.kp_driving["value"] for b in batches])
    kp_norm = torch.cat([b.kp_norm["value"] for b in batches])
    assert torch.allclose(kp_norm, kp_source + kp_driving - kp_initial, atol=1e-6)
    absolute = Animator(animator.kp_detector, animator.generator, frame_size=(64, 64), relative=False)
    batch = next(absolute.animate(source, frames))
    assert torch.equal(batch.kp_norm["value"], batch.kp_driving["value"])


def test_source_is_encoded_once_and_frames_stream_in_batches(animator):
    encodes, detected = [], []
    h1 = animator.generator.first.register_forward_hook(lambda m, i, o: encodes.append(o.shape[0]))
    h2 = animator.kp_detector.register_forward_hook(lambda m, i, o: detected.append(o["value"].shape[0]))
    pulled = 0

    def endless():  # a driving "video" that never ends: only a streaming animator can start on it
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield random_frames(1, seed=i % 3)[0]

    try:
        frames = list(itertools.islice(render(animator, random_frames(1)[0], endless()), 6))
    finally:
        h1.remove()
        h2.remove()
    assert len(frames) == 6 and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
    assert pulled == 8  # two batches of 4, nothing read ahead
    assert encodes == [1]  # the generator's encoder ran for the source only
    assert detected == [1, 4, 4]  # source keypoints once, then one detector pass per batch


def test_batch_size_does_not_change_the_result(animator, tiny_config_path):
    source, frames = random_frames(1, seed=3)[0], random_frames(5, seed=4)
    one = Animator(animator.kp_detector, animator.generator, frame_size=(64, 64), batch_size=1)
    a = np.stack(list(render(animator, source, frames)))
    b = np.stack(list(render(one, source, frames)))
    assert a.shape == (5, 64, 64, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # equal up to float rounding of a uint8 step


def test_side_by_side_layout_shows_source_driving_result(animator):
    source, frames = random_frames(1, seed=5)[0], random_frames(2, 64, 64, seed=6)
    out = list(render(animator, source, frames, layout="side-by-side", output_size=(32, 32)))
    assert out[0].shape == (32, 96, 3)
    assert np.array_equal(out[1][:, :32], to_uint8(animator.prepare(source), (32, 32))[0])
    assert np.array_equal(out[1][:, 32:64], to_uint8(animator.prepare(frames[1]), (32, 32))[0])
    plain = list(render(animator, source, frames, output_size=(32, 32)))
    assert np.array_equal(out[1][:, 64:], plain[1])
    drawn = list(render(animator, source, frames, layout="side-by-side", draw_kp=True, output_size=(32, 32)))
    assert not np.array_equal(drawn[0], out[0])
    with pytest.raises(AnimatorError, match="layout must be one of"):
        next(render(animator, source, frames, layout="grid"))


def test_keypoints_are_drawn_as_the_configs_visualizer_params_say(animator):
    """visualizer_params (kp_size, colormap) decide the discs; an unknown colormap is refused before any frame."""
    source, frames = random_frames(1, seed=5)[0], random_frames(2, 64, 64, seed=6)
    styled = copy.copy(animator)
    styled.visualizer = VisualizerParams(kp_size=4, colormap="viridis")  # 4 px discs: output and model both 64 px
    plain = list(render(styled, source, frames, output_size=(64, 64)))
    drawn = list(render(styled, source, frames, draw_kp=True, output_size=(64, 64)))
    changed = (drawn[1] != plain[1]).any(axis=-1)
    palette = {tuple(c) for c in colormap_colors("viridis", animator.kp_detector.kp.out_channels)}
    assert changed.sum() > 30 and {tuple(c) for c in drawn[1][changed]} <= palette
    styled.visualizer = VisualizerParams(colormap="rainbw")
    with pytest.raises(ConfigError, match="visualizer_params.colormap: unknown colormap 'rainbw'"):
        next(render(styled, source, frames, draw_kp=True))


def test_motion_options_given_as_none_follow_the_configs_normalization_params(tiny_config_path):
    """The original's animate mode reads animate_params.normalization_params (tiny-64.yaml, as vox-256.yaml:
    relative, its jacobians relative, scale not adapted); a value given wins, and one not given keeps the
    Animator's default (relative motion, scale adapted: `fomm animate`'s)."""
    import dataclasses

    from fomm.config.schema import load_config

    def motion(config, **options) -> tuple[bool, bool, bool]:  # noqa: ANN001 - a path or a FommConfig
        a = Animator.from_config(config, random_init=True, **options)
        return a.relative, a.adapt_movement_scale, a.use_relative_jacobian

    unset = {"relative": None, "adapt_movement_scale": None}
    assert motion(tiny_config_path, **unset) == (True, False, True)
    cfg = load_config(tiny_config_path)
    flipped = dataclasses.replace(cfg, animate_params=dataclasses.replace(
        cfg.animate_params, normalization_params=dataclasses.replace(
            cfg.animate_params.normalization_params, adapt_movement_scale=True, use_relative_movement=False,
            use_relative_jacobian=False)))
    assert motion(flipped, **unset) == (False, True, False)
    assert motion(flipped, relative=True, adapt_movement_scale=False) == (True, False, False)
    assert motion(tiny_config_path) == (True, True, True)


def test_an_output_of_nan_is_an_error_not_black_frames(tiny_config_path):
    """Weights that pass the checkpoint's checks can still overflow: the frames were written black, exit 0."""
    broken = Animator.from_config(tiny_config_path, random_init=True, batch_size=2)
    with torch.no_grad():
        next(broken.generator.parameters()).fill_(float("nan"))
    with pytest.raises(AnimatorError, match=r"^the model's output holds NaN or inf values \(driving frames 0–1\)"):
        next(broken.animate(random_frames(1)[0], random_frames(3, seed=1)))


def test_a_detector_of_zero_weights_is_an_error_naming_the_jacobians_not_a_traceback(tiny_config_path):
    """All-zero weights pass the checkpoint's checks; their jacobians are 0, and inverting one was a LinAlgError."""
    broken = Animator.from_config(tiny_config_path, random_init=True, batch_size=2)
    with torch.no_grad():
        for p in broken.kp_detector.parameters():
            p.zero_()
    with pytest.raises(AnimatorError, match=r"^the model's keypoint jacobians are singular \(not invertible\): .* "
                                            r"\(driving frames 0–1\)$"):
        next(broken.animate(random_frames(1)[0], random_frames(3, seed=1)))


def test_from_config_needs_a_checkpoint_or_an_explicit_random_init(tiny_config_path, tmp_path):
    with pytest.raises(AnimatorError, match="no checkpoint given"):
        Animator.from_config(tiny_config_path)
    trained = Animator.from_config(tiny_config_path, random_init=True, seed=7)
    path = tmp_path / "tiny.pth.tar"
    path.write_bytes(checkpoint_bytes(generator=trained.generator, kp_detector=trained.kp_detector))
    loaded = Animator.from_config(tiny_config_path, path, seed=123)
    assert not loaded.generator.training and not loaded.kp_detector.training
    source, frames = random_frames(1, seed=8)[0], random_frames(2, seed=9)
    assert np.array_equal(np.stack(list(render(trained, source, frames))),
                          np.stack(list(render(loaded, source, frames))))
