"""Evaluation speed on this CPU: frames/s of reconstruction, of each metric extractor, and of the whole
in-process evaluation (reconstruction + L1/AKD/AED) — printed as JSON.

python benchmarks/bench_evaluate.py [--config configs/tiny-64.yaml] [--frames 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from evaluation.extractors import BackendUnavailableError, MissingWeightsError, make_extractor
from evaluation.reconstruction import ModelSource, reconstruct_video

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int = 2) -> float:  # noqa: ANN001
    """Best wall time of `repeats` calls (the first call also warms up)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def synthetic_frames(size: int, n: int) -> np.ndarray:
    from preprocessing.synthetic import make_identity, render_video

    ident = make_identity(np.random.default_rng(0), 0.3)
    return render_video(ident, np.random.default_rng(1), size, n, 25.0)  # T×H×W×3 uint8


def face_frames(size: int, n: int) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(REPO.parent / "shared" / "data" / "face_talk_d.mp4"))
    frames = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(frame[..., ::-1], (size, size), interpolation=cv2.INTER_AREA))
    return np.ascontiguousarray(np.stack(frames))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs" / "tiny-64.yaml"))
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out: dict = {"cpu": platform.processor() or platform.machine(), "torch_threads": args.threads,
                 "frames": args.frames, "config": Path(args.config).name}

    model = ModelSource.resolve(args.config, None).load()
    size = model.frame_size[0]
    video = synthetic_frames(size, args.frames)
    seconds = timed(lambda: reconstruct_video(model, video, batch_size=args.batch_size))
    out["reconstruction_fps"] = round(args.frames / seconds, 2)

    faces = face_frames(256, 8)
    extractor_fps = {}
    for kind, name, frames in (("keypoints", "foreground-centroids", video), ("embedding", "colour-histogram", video),
                               ("keypoints", "dlib-68", faces), ("embedding", "dlib-resnet-128", faces),
                               ("keypoints", "face-alignment", faces)):
        try:
            extractor = make_extractor(kind, name)
        except (MissingWeightsError, BackendUnavailableError) as err:
            extractor_fps[name] = f"unavailable: {type(err).__name__}"
            continue
        extractor_fps[f"{name}@{frames.shape[1]}px"] = round(len(frames) / timed(lambda e=extractor, f=frames: e(f)), 2)
    out["extractor_fps"] = extractor_fps

    from evaluation.ray_jobs import evaluate
    from evaluation.runner import EvalConfig
    from preprocessing.synthetic import write_synthetic_shards

    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic_shards(Path(tmp) / "data", num_videos=4, size=size, num_frames=args.frames // 4)
        cfg = EvalConfig(config_path=args.config, checkpoint=None, data=str(data), out_dir=str(Path(tmp) / "out"),
                         domain="synthetic", num_workers=0, tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                         cpus_per_worker=args.threads, batch_size=args.batch_size)
        result = evaluate(cfg)
    out["evaluation_fps_in_process"] = round(result.frames_per_second, 2)
    out["evaluation_note"] = "reconstruction + L1 + foreground-centroids AKD + colour-histogram AED, no Ray"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
