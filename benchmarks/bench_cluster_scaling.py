"""Preprocessing throughput on a multi-node Ray cluster: videos/s of pipelines/preprocess.py submitted as a Ray job
with 1 worker node, then 2 worker nodes, of 1 CPU each, at three corpus sizes. Prints JSON.

python benchmarks/bench_cluster_scaling.py [--videos 40 160 640] [--size 64] [--frames 32] [--real 8]

The cluster is one machine's: a head (job server and driver, no CPUs) and worker nodes (benchmarks/local_cluster.py).
Videos: the built-in synthetic set at `--size`², `--frames` frames, preprocessed with the flags of the node-loss test
(--kind none --size 64 --min-frames 8 --shard-mb 0.3 --workers <nodes>). Wall time runs from `ray job submit` to
its return. Each cluster first runs a 1-video job: its wall time is the fixed start-up cost (working dir upload,
driver, Ray Data's actor pool, manifest), shown apart; throughput is given raw (videos / wall) and without it
(videos / (wall − fixed)). `speedup` is 2 nodes over 1 node at each size.

`--real N`: also N copies of a real 720×1280 video (../shared/data/face_desk_portrait.mp4, 352 frames at 30 fps)
named by a VoxCeleb-style metadata CSV, one 352-frame clip each with a 394×505 box, cut to 256² (the VoxCeleb
path: decode every frame up to the clip's end, crop, resize, JPEG): its cost per decoded frame sizes real corpora.

`worker_cpu_s_…`: CPU seconds of the worker nodes' processes (from /proc) less the start-up job's, per video or
frame: what a video costs in core-seconds whatever the threads (PyAV decodes with threads of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.local_cluster import REPO, LocalCluster, RssPoller, make_corpus  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "face_desk_portrait.mp4"
REAL_FRAMES = 352


def real_corpus(folder: Path, num_videos: int) -> Path:
    """A metadata CSV of `num_videos` hard links of the real 720×1280 video, one whole-length clip each."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["video_id,start,end,bbox,fps,width,height,partition,person_id"]
    for i in range(num_videos):
        os.link(REAL, folder / f"real{i:04d}.mp4")
        rows.append(f"real{i:04d},0,{REAL_FRAMES},160-200-554-705,30,720,1280,train,id{i % 4}")
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    return folder / "metadata.csv"


def preprocess_args(inputs: Path, out: Path, workers: int, size: int) -> list[str]:
    """The node-loss test's flags; a metadata CSV input's clips are cut at 256² (as VoxCeleb's)."""
    size = 256 if inputs.suffix == ".csv" else size
    return ["pipelines/preprocess.py", "--input", str(inputs), "--output", str(out), "--kind", "none", "--size",
            str(size), "--min-frames", "8", "--shard-mb", "0.3", "--workers", str(workers)]


def run_job(lc: LocalCluster, inputs: Path, out: Path, workers: int, size: int,
            sid: str) -> tuple[float, int, float]:
    """One preprocessing job: (wall seconds, clips made, CPU seconds of the worker nodes); its output is removed
    afterwards."""
    with RssPoller(lc.groups()) as poller:
        seconds, log = lc.submit(preprocess_args(inputs, out, workers, size), sid)
    clips = re.search(r'"num_clips": (\d+)', log)
    shutil.rmtree(out, ignore_errors=True)
    return seconds, int(clips.group(1)) if clips else -1, poller.worker_cpu_s()


def measure(lc: LocalCluster, corpora: dict[int, Path], real: tuple[int, Path] | None, tmp: Path, nodes: int,
            size: int) -> dict:
    """The 1-video start-up job, every corpus size, then the real videos, on the cluster as it is now (`nodes`
    worker nodes)."""
    fixed, _, fixed_cpu = run_job(lc, corpora[1], tmp / "out", nodes, size, f"n{nodes}-fixed")
    rows = []
    for n, folder in corpora.items():
        if n == 1:
            continue
        wall, clips, cpu = run_job(lc, folder, tmp / "out", nodes, size, f"n{nodes}-v{n}")
        rows.append({"videos": n, "clips": clips, "wall_s": round(wall, 2), "videos_per_s": round(n / wall, 2),
                     "videos_per_s_without_startup": round(n / max(wall - fixed, 1e-3), 2),
                     "worker_cpu_s_per_video": round((cpu - fixed_cpu) / n, 4)})
    out = {"worker_nodes": nodes, "startup_job_s": round(fixed, 2), "startup_worker_cpu_s": round(fixed_cpu, 2),
           "sizes": rows}
    if real is not None:
        n, csv = real
        wall, clips, cpu = run_job(lc, csv, tmp / "out", nodes, size, f"n{nodes}-real")
        out["real_720p"] = {"videos": n, "clips": clips, "decoded_frames": n * REAL_FRAMES, "wall_s": round(wall, 2),
                            "videos_per_s_without_startup": round(n / max(wall - fixed, 1e-3), 3),
                            "worker_cpu_s_per_video": round((cpu - fixed_cpu) / n, 3),
                            "worker_cpu_s_per_frame": round((cpu - fixed_cpu) / (n * REAL_FRAMES), 5)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, nargs="+", default=[40, 160, 640])
    p.add_argument("--size", type=int, default=64, help="raw and output frame size")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--real", type=int, default=8, help="copies of the real 720p video (0: none)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        corpora = {n: make_corpus(tmp / f"raw{n}", n, args.size, args.frames) for n in [1, *args.videos]}
        real = (args.real, real_corpus(tmp / "real", args.real)) if args.real > 0 else None
        with LocalCluster(tmp / "cluster", cpus=1) as lc:
            start_s = lc.start(["node_a"])
            one = measure(lc, corpora, real, tmp, 1, args.size)
            add_s = lc.add_worker("node_b")
            two = measure(lc, corpora, real, tmp, 2, args.size)
    speedup = [{"videos": a["videos"], "raw": round(b["videos_per_s"] / a["videos_per_s"], 2),
                "without_startup": round(b["videos_per_s_without_startup"] / a["videos_per_s_without_startup"], 2)}
               for a, b in zip(one["sizes"], two["sizes"])]
    if real is not None:
        speedup.append({"videos": f"{args.real} real 720p", "without_startup": round(
            two["real_720p"]["videos_per_s_without_startup"] / one["real_720p"]["videos_per_s_without_startup"], 2)})
    print(json.dumps({"benchmark": "cluster_preprocess_scaling", "size": args.size, "frames": args.frames,
                      "cluster_start_s": round(start_s, 1), "second_node_start_s": round(add_s, 1),
                      "one_node": one, "two_nodes": two, "speedup": speedup}, indent=1))


if __name__ == "__main__":
    main()
