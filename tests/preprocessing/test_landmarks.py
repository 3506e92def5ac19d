"""The one face-alignment wrapper: which weight files it needs, and the error that names a missing one."""

from __future__ import annotations

import pytest

from preprocessing.detection import S3FD_FILE
from preprocessing.landmarks import (
    FAN_2D_WEIGHTS,
    FaceLandmarks,
    missing_weights,
)
from services.errors import MissingWeightsError


def test_missing_weights_are_named_with_how_to_provide_them(tmp_path):
    folder = tmp_path / "checkpoints"
    assert missing_weights(tmp_path) == [folder / FAN_2D_WEIGHTS, folder / S3FD_FILE]
    folder.mkdir()
    (folder / FAN_2D_WEIGHTS).write_bytes(b"")
    assert missing_weights(tmp_path) == [folder / S3FD_FILE]
    with pytest.raises(MissingWeightsError) as err:
        FaceLandmarks(hub_dir=tmp_path)
    assert err.value.path == folder / S3FD_FILE and isinstance(err.value, FileNotFoundError)
    assert f"{folder / S3FD_FILE} is missing (no download at run time)" in str(err.value)
    assert f"python-fan/{S3FD_FILE}" in str(err.value)
