"""Video reconstruction on tiny-64: equals frame-by-frame model calls, batch-size invariant, checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.reconstruction import ModelSource, reconstruct_video
from fomm.animator import frames_to_tensor, to_uint8

pytestmark = pytest.mark.numeric


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)


def test_matches_direct_model_calls_and_batching(tiny_config_path, video) -> None:
    model = ModelSource.resolve(tiny_config_path, None).load()
    out = reconstruct_video(model, video, batch_size=2, precision="fp32")
    assert out["prediction"].shape == video.shape and out["prediction"].dtype == np.uint8
    np.testing.assert_array_equal(out["real"], video)
    x = frames_to_tensor(video)
    with torch.no_grad():
        kp_source = model.kp_detector(x[:1])
        for t in (0, 3):  # the source is frame 0; frame t is driven by its own absolute keypoints
            kp_driving = model.kp_detector(x[t:t + 1])
            direct = model.generator(x[:1], kp_driving=kp_driving, kp_source=kp_source)["prediction"]
            np.testing.assert_array_equal(to_uint8(direct)[0], out["prediction"][t])
    np.testing.assert_array_equal(reconstruct_video(model, video, batch_size=5, precision="fp32")["prediction"],
                                  out["prediction"])
    bf16 = reconstruct_video(model, video, batch_size=2, precision="bf16")["prediction"]
    assert np.abs(bf16.astype(int) - out["prediction"]).max() <= 3  # bf16 autocast: measured 1 level at most


def test_checkpoint_round_trip_and_resizing(tiny_config_path, tmp_path, video) -> None:
    from fomm.checkpoint import checkpoint_bytes

    model = ModelSource.resolve(tiny_config_path, None).load()
    with torch.no_grad():
        for p in model.generator.final.parameters():
            p.add_(0.3)  # differ from the random init
    path = tmp_path / "m.pth.tar"
    path.write_bytes(checkpoint_bytes(generator=model.generator, kp_detector=model.kp_detector, epoch=7))
    loaded = ModelSource.resolve(tiny_config_path, path).load()
    np.testing.assert_array_equal(reconstruct_video(loaded, video)["prediction"],
                                  reconstruct_video(model, video)["prediction"])
    big = np.repeat(np.repeat(video, 2, axis=1), 2, axis=2)  # 128² input is evaluated at the model's 64²
    assert reconstruct_video(loaded, big)["prediction"].shape == (5, 64, 64, 3)
    with pytest.raises(ValueError, match="T×H×W×3"):
        reconstruct_video(loaded, video[0])
