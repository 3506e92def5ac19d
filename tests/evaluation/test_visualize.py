"""Pictures and tables: keypoints in the training grid, side-by-side videos, GIF/PNG files, labelled metric tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation import visualize
from evaluation.report import metric_table_text
from fomm.config.loader import ConfigError
from fomm.config.schema import VisualizerParams
from fomm.visualization import draw_keypoints


def test_side_by_side_strip_and_files(tmp_path) -> None:
    real = np.zeros((4, 8, 10, 3), np.uint8)
    real[:, 7, 9] = np.arange(4)[:, None] * 50  # frames differ (GIF writers merge identical ones)
    generated = real.copy()
    generated[:, :, :5] = 10
    both = visualize.side_by_side(real, generated)
    assert both.shape == (4, 8, 30, 3)
    assert both[0, 0, 20].tolist() == [40, 40, 40] and both[0, 7, 29].tolist() == [0, 0, 0]  # |diff| ×4
    assert visualize.strip(real, 3).shape == (8, 30, 3)
    gif = visualize.write_gif(both, tmp_path / "v.gif", scale=2)
    with Image.open(gif) as im:
        assert im.n_frames == 4 and im.size == (60, 16)
    assert Image.open(visualize.write_png(both[0], tmp_path / "f.png")).size == (30, 8)


def test_training_grid_from_model_outputs(tiny_config_path) -> None:
    from evaluation.reconstruction import ModelSource

    model = ModelSource.resolve(tiny_config_path, None).load()
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        kp_s, kp_d = model.kp_detector(source), model.kp_detector(driving)
        out = model.generator(source, kp_driving=kp_d, kp_source=kp_s)
    style = VisualizerParams(kp_size=3, draw_border=False, colormap="viridis")  # a config's visualizer_params
    grid = visualize.training_grid(source, driving, out, kp_s, kp_d, style)
    assert grid.shape == (128, 5 * 64, 3) and grid.dtype == np.uint8  # src | drv | deformed | occlusion | pred
    # the keypoint columns: the model package's painter, discs of kp_size px (the model's frames) in viridis at k / K
    images = (source.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # B×H×W×3
    colors = visualize.colormap_colors("viridis", kp_s["value"].shape[1])
    assert colors[0].tolist() == [68, 1, 84]  # viridis(0) = (0.267, 0.005, 0.329)
    for row in range(2):
        want = draw_keypoints(images[row], kp_s["value"][row].numpy(), colors, radius=3)
        np.testing.assert_array_equal(grid[64 * row:64 * (row + 1), :64], want)
        assert not np.array_equal(want, images[row])  # something was drawn
    # the original's defaults (draw_border: true): a white frame round each picture, the inside unchanged
    framed = visualize.training_grid(source, driving, out, kp_s, kp_d, VisualizerParams(colormap="viridis",
                                                                                         kp_size=3))
    for top in (0, 64):
        for left in range(0, 5 * 64, 64):
            picture = framed[top:top + 64, left:left + 64]
            assert (picture[[0, -1]] == 255).all() and (picture[:, [0, -1]] == 255).all()
            np.testing.assert_array_equal(picture[1:-1, 1:-1], grid[top + 1:top + 63, left + 1:left + 63])
    grid = visualize.training_grid(source, driving, out, kp_s, kp_d)  # the default style, compared below in bf16
    # a bf16-autocast training step hands over bf16 keypoints and maps (train_params.bf16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        kp_s, kp_d = model.kp_detector(source), model.kp_detector(driving)
        out = model.generator(source, kp_driving=kp_d, kp_source=kp_s)
    assert kp_s["value"].dtype == torch.bfloat16 or out["prediction"].dtype == torch.bfloat16
    grid_bf16 = visualize.training_grid(source, driving, out, kp_s, kp_d)
    assert grid_bf16.shape == grid.shape
    assert np.abs(grid_bf16.astype(int) - grid.astype(int)).mean() < 8  # the same picture, to bf16 precision


def test_keypoint_colours_come_from_the_configs_colormap() -> None:
    assert visualize.colormap_colors("gist_rainbow", 4)[0].tolist() == [255, 0, 41]  # gist_rainbow(0) = (1, 0, .16)
    assert visualize.colormap_colors("gist_rainbow", 2)[1].tolist() == [0, 255, 140]  # at 1 / 2: (0, 1, .548)
    with pytest.raises(ConfigError, match=r"^visualizer_params.colormap: unknown colormap 'rainbw'"):
        visualize.colormap_colors("rainbw", 3)
    image = np.zeros((512, 512, 3), np.uint8)
    drawn = visualize.draw_styled_kp(image, np.array([[0.0, 0.0]]), VisualizerParams(kp_size=5), scale=2)
    assert 250 < (drawn.any(axis=-1)).sum() < 340  # on frames twice the model's: radius 5 · 2 = 10 px, π·10² ≈ 314


def test_metric_table_names_the_backends() -> None:
    table = metric_table_text({"l1": 0.05, "l1_frames": 10, "akd": float("nan"), "akd_frames": 0},
                              {"l1": "l1", "akd": "akd/dlib-68"}, {"dlib-68": "dlib shape predictor"})
    lines = table.splitlines()
    assert lines[2].split()[:3] == ["L1", "0.0500", "10"]
    assert lines[3].startswith("AKD · dlib-68") and "n/a" in lines[3]
    assert lines[-1] == "dlib-68: dlib shape predictor"


def test_matplotlib_under_a_home_it_cannot_write_is_quiet_and_leaves_nothing(tmp_path, repo_root) -> None:
    """A container's user whose home cannot be written: matplotlib printed two warning lines on every command that
    draws (`fomm animate` checks the colormap). Its cache goes to a temporary folder that is removed at exit."""
    import os
    import subprocess
    import sys

    (tmp_path / "file").write_text("")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    env.update(HOME=str(tmp_path / "file" / "home"), TMPDIR=str(scratch), PYTHONPATH=str(repo_root))
    code = ("from evaluation.visualize import colormap_colors; from evaluation.report import _pyplot; "
            "print(colormap_colors('gist_rainbow', 2).tolist()); _pyplot().figure()")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.strip() == "[[255, 0, 41], [0, 255, 140]]"  # gist_rainbow at 0 and 1/2, as with a home
    assert list(scratch.iterdir()) == []
