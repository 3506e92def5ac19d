"""Planning time of a metadata CSV: seconds to turn a VoxCeleb-style CSV into video tasks, at three sizes.

python benchmarks/bench_planning.py [--rows 2000 20000 200000]   → prints one JSON object

Each row is one clip of its own video (as in the published vox-metadata.csv, whose ids carry person, YouTube id
and frame range); one raw video is present, the rest are missing (a partial download). Planning must grow no
faster than the rows: `us_per_row` stays flat across the sizes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocessing.config import PreprocessConfig  # noqa: E402
from preprocessing.sources import collect_tasks  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_metadata(folder: Path, rows: int) -> Path:
    """A vox-style metadata CSV of `rows` clips, each of its own video; the first video's file is present."""
    lines = ["video_id,start,end,bbox,fps,width,height,partition"]
    for i in range(rows):
        vid = f"id{10000 + i // 50}#yt{i:07d}#{i % 900:06d}#{i % 900 + 150:06d}"
        lines.append(f"{vid},{i % 900},{i % 900 + 150},100-80-300-280,25,640,360,{'test' if i % 10 == 0 else 'train'}")
    path = folder / "metadata.csv"
    path.write_text("\n".join(lines) + "\n")
    shutil.copyfile(SHARED / "face_talk_a.mp4", folder / f"{lines[1].split(',')[0]}.mp4")
    return path


def plan_seconds(rows: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        csv = write_metadata(Path(tmp), rows)
        cfg = PreprocessConfig(input=str(csv), output=str(Path(tmp) / "out"))
        start = time.perf_counter()
        tasks = collect_tasks(cfg)
        seconds = time.perf_counter() - start
    present = sum(1 for t in tasks if t.path)
    return {"rows": rows, "tasks": len(tasks), "present": present, "seconds": round(seconds, 3),
            "us_per_row": round(1e6 * seconds / rows, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[2000, 20000, 200000])
    args = p.parse_args()
    sizes = [plan_seconds(n) for n in args.rows]
    growth = sizes[-1]["us_per_row"] / sizes[0]["us_per_row"] if len(sizes) > 1 else 1.0
    print(json.dumps({"benchmark": "csv_planning", "sizes": sizes,
                      "per_row_growth_smallest_to_largest": round(growth, 2)}, indent=1))


if __name__ == "__main__":
    main()
