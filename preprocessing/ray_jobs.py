"""Ray Data plan, the only Ray code of preprocessing: videos → map_batches(process) → parts → shards."""

from __future__ import annotations

import dataclasses
import pickle

import ray

from preprocessing import dataset_writer as dw
from preprocessing.config import PreprocessConfig
from preprocessing.process import detector_for
from preprocessing.sources import VideoTask
from services import s3_retries, storage
from services.ray_start import check_room, ensure_ray


class ProcessVideos:
    """Ray Data actor: holds one detector and processes videos one row at a time."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        import cv2

        cv2.setNumThreads(1)  # one CPU per actor: OpenCV's own threads would only contend
        self.cfg, self.layout, self.detector = cfg, dw.Layout(cfg.output, cfg.endpoint), None

    def __call__(self, row: dict) -> dict:
        """One video's outcome recorded in the dataset root; returns the S3 retries it took."""
        task: VideoTask = pickle.loads(row["task"])  # pickled by run_preprocess: Arrow has no column type for it
        if self.detector is None and not task.segments:  # missing videos never reach the actors
            self.detector = detector_for(self.cfg)
        with s3_retries.counting_retries() as retries:
            dw.run_video(task, self.cfg, self.layout, self.detector)
        return {"s3_retries": retries.count}


def assemble_shard_row(row: dict, cfg: PreprocessConfig) -> dict:
    """Ray Data map: one shard plan → one shard file (with the S3 retries it took)."""
    with s3_retries.counting_retries() as retries:
        info = dw.assemble_shard(dw.Layout(cfg.output, cfg.endpoint), dw.ShardPlan(**row))
    return {**info, "s3_retries": retries.count}


def run_preprocess(cfg: PreprocessConfig, address: str | None = None) -> dict:
    """Skip finished videos, process the rest on Ray Data, pack shards, commit the manifest; returns
    where the shards, manifest and error table are, with counts (see dataset_writer.summarize)."""
    with dw.writing_alone(cfg), s3_retries.counting_retries() as retries:  # the driver's; workers: in their rows
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
            ds = ray.data.from_items([{"task": pickle.dumps(t)} for t in todo],  # bytes: no Arrow conversion warning
                                     override_num_blocks=min(len(todo), 64 * workers))
            ds = ds.map(ProcessVideos, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
                        fn_constructor_kwargs={"cfg": worker_cfg})
            worker_retries += int(ds.materialize().sum("s3_retries") or 0)

        def assemble(plans: list[dw.ShardPlan]) -> list[dict]:
            nonlocal worker_retries
            if not plans:
                return []
            ds = ray.data.from_items([dataclasses.asdict(p) for p in plans], override_num_blocks=len(plans))
            done = ds.map(assemble_shard_row, num_cpus=1, fn_kwargs={"cfg": worker_cfg}).take_all()
            worker_retries += sum(r.pop("s3_retries") for r in done)
            return done  # Ray Data hands back Python values: the manifest's entries as written

        manifest = dw.finalize(layout, cfg, assemble=assemble)
    return {**dw.summarize(layout, manifest), "s3_retries": retries.count + worker_retries}
