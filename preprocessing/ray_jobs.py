"""Ray Data plan: videos → map_batches(process) → per-video parts → sharded Parquet.

The only Ray code of `preprocessing`; every step is a plain function of dataset_writer / process.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import ray

from preprocessing import dataset_writer as dw
from preprocessing import storage
from preprocessing.config import PreprocessConfig
from preprocessing.sources import VideoTask, collect_tasks

REPO_ROOT = str(Path(__file__).resolve().parents[1])


class ProcessVideos:
    """Ray Data actor: holds one detector and processes videos one row at a time."""

    def __init__(self, cfg: dict, fs, input_fs=None) -> None:  # noqa: ANN001 - pickled pyarrow filesystems
        self.cfg = PreprocessConfig.from_dict(cfg)
        self.layout = dw.Layout(self.cfg.output, self.cfg.endpoint, fs=fs)
        self.input_fs = input_fs
        self.detector = None
        import cv2

        cv2.setNumThreads(1)  # one CPU per actor: OpenCV's own threads would only contend

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {"video_id": [], "status": [], "clips": [], "frames": [], "stage": [], "message": []}
        for i in range(len(batch["video_id"])):
            task = VideoTask.from_row({k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in batch.items()})
            if self.detector is None and not task.segments and not task.missing:
                from preprocessing.process import detector_for

                self.detector = detector_for(self.cfg)
            r = dw.run_video(task, self.cfg, self.layout, self.detector, self.input_fs)
            for k in out:
                out[k].append(r.get(k, ""))
        return out


def assemble_shard_row(row: dict, cfg: dict, fs) -> dict:  # noqa: ANN001 - a pickled pyarrow filesystem
    """Ray Data map: one shard plan → one shard file."""
    config = PreprocessConfig.from_dict(cfg)
    layout = dw.Layout(config.output, config.endpoint, fs=fs)
    plan = dw.ShardPlan(file=str(row["file"]), split=str(row["split"]), parts=[str(p) for p in row["parts"]],
                        videos=[str(v) for v in row["videos"]], rows=int(row["rows"]), bytes=int(row["bytes"]))
    info = dw.assemble_shard(layout, plan)
    return {"file": info["file"], "split": info["split"], "rows": info["rows"], "bytes": info["bytes"],
            "sha256": info["sha256"], "frames": info["frames"], "videos": info["videos"]}


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to Ray (RAY_ADDRESS, e.g. inside `ray job submit`) or start a local instance."""
    if ray.is_initialized():
        return
    env = {"PYTHONPATH": os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env={"env_vars": env} if not _in_ray_job() else None)
    else:
        ray.init(num_cpus=num_cpus, runtime_env={"env_vars": env}, include_dashboard=False)


def _in_ray_job() -> bool:
    return bool(os.environ.get("RAY_JOB_ID") or os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))


def run_preprocess(cfg: PreprocessConfig, address: str | None = None) -> dict:
    """Run the job: skip finished videos, process the rest on Ray Data, pack shards, commit the manifest.

    Returns where the shards, manifest and error table are, with counts (see dataset_writer.summarize).
    """
    layout = dw.Layout(cfg.output, cfg.endpoint)
    tasks = collect_tasks(cfg)
    done = dw.finished_videos(layout, include_errors=not cfg.retry_errors)
    todo = [t for t in tasks if t.video_id not in done]
    for task in (t for t in todo if t.missing):  # nothing to decode: record it here
        dw.run_video(task, cfg, layout)
    todo = [t for t in todo if not t.missing]
    cfg_dict = cfg.to_dict()
    if todo or dw.plan_shards(layout, cfg.shard_bytes, None)[0]:
        ensure_ray(address, cfg.workers)
    if todo:
        workers = cfg.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = min(workers, len(todo))
        remote = next((t.path for t in todo if storage.is_remote(t.path)), None)
        input_fs = storage.resolve(remote, cfg.endpoint)[0] if remote else None
        ds = ray.data.from_items([t.to_row() for t in todo], override_num_blocks=min(len(todo), 64 * workers))
        ds = ds.map_batches(ProcessVideos, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
                            fn_constructor_kwargs={"cfg": cfg_dict, "fs": layout.fs, "input_fs": input_fs})
        ds.materialize()

    def assemble(plans: list[dw.ShardPlan]) -> list[dict]:
        if not plans:
            return []
        rows = [{"file": p.file, "split": p.split, "parts": p.parts, "videos": p.videos, "rows": p.rows,
                 "bytes": p.bytes} for p in plans]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map(assemble_shard_row, num_cpus=1, fn_kwargs={"cfg": cfg_dict, "fs": layout.fs})
        return [{"file": str(r["file"]), "split": str(r["split"]), "rows": int(r["rows"]), "bytes": int(r["bytes"]),
                 "sha256": str(r["sha256"]), "frames": int(r["frames"]), "videos": [str(v) for v in r["videos"]]}
                for r in ds.take_all()]

    manifest = dw.finalize(layout, cfg, assemble=assemble)
    return dw.summarize(layout, manifest)
