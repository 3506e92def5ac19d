"""Fixtures for preprocessing tests: tiny synthetic videos and broken files made on the spot."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from preprocessing.synthetic import generate_synthetic_videos


def write_zero_frame_video(path: Path) -> Path:
    """An .mp4 with a video stream and no frames (fragmented, so the header is written without samples)."""
    container = av.open(str(path), "w", options={"movflags": "frag_keyframe+empty_moov"})
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()
    container.close()
    return path


def write_corrupt_video(src: Path, path: Path) -> Path:
    """The first third of a real .mp4: its index (moov) is cut off, so no demuxer can read it."""
    data = src.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """Six 64×64 synthetic videos of 24 frames with metadata.csv (seed 0)."""
    out = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_videos(out, num_videos=6, size=64, num_frames=24, seed=0)
    return out


@pytest.fixture
def zero_frame_video(tmp_path) -> Path:
    return write_zero_frame_video(tmp_path / "zero_frames.mp4")


@pytest.fixture
def corrupt_video(tmp_path, shared_data) -> Path:
    return write_corrupt_video(shared_data / "face_talk_d.mp4", tmp_path / "corrupt.mp4")
