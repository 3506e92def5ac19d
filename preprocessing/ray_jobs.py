"""Ray Data plan, the only Ray code of preprocessing: videos → map_batches(process) → parts → shards."""

from __future__ import annotations

import dataclasses

import numpy as np
import ray

from preprocessing import dataset_writer as dw
from preprocessing.config import PreprocessConfig
from preprocessing.sources import VideoTask
from services import s3_retries, storage
from services.ray_start import check_room, ensure_ray


class ProcessVideos:
    """Ray Data actor: holds one detector and processes videos one row at a time."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg
        self.layout = dw.Layout(self.cfg.output, self.cfg.endpoint)
        self.detector = None
        import cv2

        cv2.setNumThreads(1)  # one CPU per actor: OpenCV's own threads would only contend

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {"video_id": [], "status": [], "clips": [], "frames": [], "stage": [], "message": [],
                                "s3_retries": []}
        for i in range(len(batch["video_id"])):
            task = VideoTask.from_row({k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in batch.items()})
            if self.detector is None and not task.segments and not task.missing:
                from preprocessing.process import detector_for

                self.detector = detector_for(self.cfg)
            with s3_retries.counting_retries() as retries:
                r = dw.run_video(task, self.cfg, self.layout, self.detector)
            r["s3_retries"] = retries.count
            for k in out:
                out[k].append(r.get(k, ""))
        return out


def assemble_shard_row(row: dict, cfg: PreprocessConfig) -> dict:
    """Ray Data map: one shard plan → one shard file (with the S3 retries it took)."""
    layout = dw.Layout(cfg.output, cfg.endpoint)
    plan = dw.ShardPlan(str(row["file"]), str(row["split"]), [str(p) for p in row["parts"]],
                        [str(v) for v in row["videos"]])
    with s3_retries.counting_retries() as retries:
        info = dw.assemble_shard(layout, plan)
    return {**info, "s3_retries": retries.count}


def run_preprocess(cfg: PreprocessConfig, address: str | None = None) -> dict:
    """Skip finished videos, process the rest on Ray Data, pack shards, commit the manifest; returns
    where the shards, manifest and error table are, with counts (see dataset_writer.summarize)."""
    with s3_retries.counting_retries() as retries:  # this driver's; the workers report theirs in their rows
        worker_retries = 0
        layout, pending = dw.pending(cfg)
        missing, todo = [t for t in pending if t.missing], [t for t in pending if not t.missing]
        worker_cfg = dataclasses.replace(cfg, endpoint=storage.s3_endpoint(cfg.endpoint))  # this endpoint
        if todo or dw.plan_shards(layout, cfg.shard_bytes, None)[0]:
            ensure_ray(address, cfg.workers)
        if todo:  # before anything is written: a fixed pool the cluster cannot hold would wait forever
            workers = min(cfg.workers or max(1, int(ray.cluster_resources().get("CPU", 1))), len(todo))
            check_room("--workers", "CPU", 1, workers)
        for task in missing:  # nothing to decode: record it here
            dw.run_video(task, cfg, layout)
        if todo:
            ds = ray.data.from_items([t.to_row() for t in todo], override_num_blocks=min(len(todo), 64 * workers))
            ds = ds.map_batches(ProcessVideos, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
                                fn_constructor_kwargs={"cfg": worker_cfg})
            worker_retries += int(ds.materialize().sum("s3_retries") or 0)

        def assemble(plans: list[dw.ShardPlan]) -> list[dict]:
            nonlocal worker_retries
            if not plans:
                return []
            rows = [dataclasses.asdict(p) for p in plans]
            ds = ray.data.from_items(rows, override_num_blocks=len(rows))
            ds = ds.map(assemble_shard_row, num_cpus=1, fn_kwargs={"cfg": worker_cfg})
            done = ds.take_all()
            worker_retries += sum(int(r["s3_retries"]) for r in done)
            return [{"file": str(r["file"]), "split": str(r["split"]), "rows": int(r["rows"]), "bytes": int(r["bytes"]),
                     "sha256": str(r["sha256"]), "frames": int(r["frames"]), "videos": [str(v) for v in r["videos"]]}
                    for r in done]

        manifest = dw.finalize(layout, cfg, assemble=assemble)
    return {**dw.summarize(layout, manifest), "s3_retries": retries.count + worker_retries}
