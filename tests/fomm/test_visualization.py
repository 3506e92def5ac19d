"""The one HSV → RGB conversion: hand-computed colours, broadcasting, and agreement with matplotlib's."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from fomm.visualization import hsv_to_rgb


def test_hsv_to_rgb_hand_made():
    assert hsv_to_rgb(0.0, 1.0, 1.0).tolist() == [1.0, 0.0, 0.0]  # red
    assert hsv_to_rgb(0.5, 1.0, 1.0).tolist() == [0.0, 1.0, 1.0]  # cyan
    # hue 30°: R = v, B = v(1 − s), G halfway between: 0.8, 0.6, 0.4
    np.testing.assert_allclose(hsv_to_rgb(1 / 12, 0.5, 0.8), [0.8, 0.6, 0.4], atol=1e-15)
    assert hsv_to_rgb(0.3, 0.0, 0.25).tolist() == [0.25, 0.25, 0.25]  # no saturation: grey
    assert hsv_to_rgb(np.zeros((4, 5)), 1.0, np.ones((1, 5))).shape == (4, 5, 3)  # broadcast, …×3


def test_hsv_to_rgb_agrees_with_matplotlib():
    from matplotlib.colors import hsv_to_rgb as reference

    hsv = np.random.default_rng(0).uniform(size=(500, 3))
    np.testing.assert_allclose(hsv_to_rgb(hsv[:, 0], hsv[:, 1], hsv[:, 2]), reference(hsv), atol=1e-12)


def test_the_numpy_helpers_import_without_torch():
    code = ("import sys, fomm.visualization, preprocessing.pairs, preprocessing.synthetic; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
