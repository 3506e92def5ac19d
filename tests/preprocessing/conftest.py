"""Fixtures for preprocessing tests: tiny synthetic videos (broken files: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from preprocessing.synthetic import generate_synthetic_videos


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """Six 64×64 synthetic videos of 24 frames with metadata.csv (seed 0)."""
    out = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_videos(out, num_videos=6, size=64, num_frames=24, seed=0)
    return out
