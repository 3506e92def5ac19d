"""Memory as the corpus grows: pipelines/preprocess.py as a Ray job on 2 worker nodes of 1 CPU and a small object
store each, at 1×, 4× and 16× a base corpus: wall time per video, peak RSS per Ray worker process and per node, and
bytes spilled. Prints JSON.

python benchmarks/bench_cluster_memory.py [--base 32] [--scales 1 4 16] [--size 256] [--frames 64]
    [--object-store-mb 80]

Videos: the built-in synthetic set at `--size`², `--frames` frames each, preprocessed at the same size (--kind none
--min-frames 8 --shard-mb 0.3 --workers 2). `decoded_vs_object_store`: the corpus's decoded frames (videos × frames
× size² × 3 bytes) over one node's object store. Goals: time per video flat (linear time), peak RSS per worker
flat, and every job completes. RSS is polled from /proc every 0.2 s over each node's process group (workers
titled `ray::…`; `driver` is the job's preprocess.py on the head). Spilled bytes: the head's cumulative count
(`ray memory --stats-only`, whose "Spilled" line appears only after a spill) and the files in the nodes' spill
folders after each job. What passes through the object store here is small: the workers write each video's clips
to a part file themselves and return one status row, so the decoded frames never enter it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.local_cluster import LocalCluster, RssPoller, make_corpus  # noqa: E402

MB = 2**20


def job_args(inputs: Path, out: Path, size: int) -> list[str]:
    return ["pipelines/preprocess.py", "--input", str(inputs), "--output", str(out), "--kind", "none", "--size",
            str(size), "--min-frames", "8", "--shard-mb", "0.3", "--workers", "2"]


def run(lc: LocalCluster, inputs: Path, out: Path, size: int, sid: str) -> tuple[float, int, RssPoller]:
    """One job with its processes' memory polled: (wall seconds, clips made, the poller)."""
    with RssPoller(lc.groups()) as poller:
        seconds, log = lc.submit(job_args(inputs, out, size), sid)
    clips = re.search(r'"num_clips": (\d+)', log)
    shutil.rmtree(out, ignore_errors=True)
    return seconds, int(clips.group(1)) if clips else -1, poller


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=int, default=32, help="videos in the 1× corpus")
    p.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--frames", type=int, default=64, help="frames per video (32 videos × 64 × 256² × 3 B = 4.8× 80 MB)")
    p.add_argument("--object-store-mb", type=int, default=80, help="per node (Ray's minimum is about 75)")
    args = p.parse_args()
    store = args.object_store_mb * MB

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with LocalCluster(tmp / "cluster", cpus=1, object_store=store) as lc:
            lc.start(["node_a", "node_b"])
            fixed, _, _ = run(lc, make_corpus(tmp / "raw1", 1, args.size, args.frames), tmp / "out", args.size,
                              "mem-fixed")
            for scale in args.scales:
                n = args.base * scale
                inputs = make_corpus(tmp / f"raw{n}", n, args.size, args.frames)
                wall, clips, poller = run(lc, inputs, tmp / "out", args.size, f"mem-x{scale}")
                shutil.rmtree(inputs)
                workers = poller.workers()
                driver = [v[2] for v in poller.peaks.values() if "preprocess.py" in v[1]]
                decoded = n * args.frames * args.size * args.size * 3
                rows.append({
                    "scale": scale, "videos": n, "clips": clips, "wall_s": round(wall, 2),
                    "s_per_video": round(wall / n, 4), "s_per_video_without_startup": round((wall - fixed) / n, 4),
                    "decoded_mb": round(decoded / MB), "decoded_vs_object_store": round(decoded / store, 1),
                    "worker_processes": len(workers),
                    "worker_peak_rss_mb_max": round(max((w[2] for w in workers), default=0) / MB, 1),
                    "worker_peak_rss_mb": sorted(round(w[2] / MB, 1) for w in workers),
                    "worker_titles": sorted({w[1][:60] for w in workers}),
                    "worker_cpu_s_per_video": round(poller.worker_cpu_s() / n, 4),
                    "node_peak_rss_mb": {k: round(v / MB, 1) for k, v in sorted(poller.node_peaks.items())},
                    "driver_peak_rss_mb": round(max(driver, default=0) / MB, 1),
                    **lc.spilled()})
    growth = rows[-1]["s_per_video_without_startup"] / max(rows[0]["s_per_video_without_startup"], 1e-9)
    print(json.dumps({"benchmark": "cluster_preprocess_memory", "size": args.size, "frames": args.frames,
                      "object_store_mb_per_node": args.object_store_mb, "startup_job_s": round(fixed, 2),
                      "sizes": rows, "time_per_video_growth_smallest_to_largest": round(growth, 2)}, indent=1))


if __name__ == "__main__":
    main()
