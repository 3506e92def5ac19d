"""The real-world figure of docs/animate.md: `fomm animate --layout side-by-side` on a portrait and a talking head.

python benchmarks/figure_realworld.py [--frames 10] [--width 800] [--out benchmarks/figures/realworld-strip.png]

Runs the command itself (vox-256 architecture with RANDOM-INIT weights: no checkpoint can be downloaded
here, so the pasted face is the untrained model's output, not an animation) with auto-crop and paste-back,
and stacks its first and last frames (source | driving | result) under a banner that says so.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BANNER = "RANDOM-INIT vox-256 (no checkpoint): auto-crop + paste-back shown; the face is NOT a trained animation"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "figures" / "realworld-strip.png")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--width", type=int, default=800, help="width of the PNG")
    args = parser.parse_args()
    from services.video_read import probe_video, read_frames
    from services.video_write import write_video

    with tempfile.TemporaryDirectory() as tmp:
        drive = args.data / "face_talk_a.mp4"
        clip = write_video(Path(tmp) / "drive.mp4", read_frames(drive, args.frames), probe_video(drive).fps)
        video = Path(tmp) / "strip.mp4"
        subprocess.run([str(Path(sys.executable).parent / "fomm"), "animate", "--config", str(REPO / "configs/vox-256.yaml"),
                        "--random-init", "--source", str(args.data / "face_source_e.jpg"), "--driving", str(clip),
                        "--out", str(video), "--layout", "side-by-side", "--quiet"], check=True)
        frames = read_frames(video)
    rows = np.concatenate([frames[0], frames[-1]], axis=0)
    scale = args.width / rows.shape[1]
    rows = cv2.resize(rows, (args.width, int(round(rows.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    banner = np.full((36, rows.shape[1], 3), 255, np.uint8)
    cv2.putText(banner, BANNER, (6, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 0, 0), 1, cv2.LINE_AA)
    image = np.concatenate([banner, rows], axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp.png")
    cv2.imwrite(str(tmp_out), image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    tmp_out.replace(args.out)
    print(f"{args.out}: {image.shape[1]}×{image.shape[0]}")


if __name__ == "__main__":
    main()
