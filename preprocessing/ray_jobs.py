"""Ray Data plans: videos → map_batches(process) → per-video parts → sharded Parquet; shards → frame pairs.

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


def _pairs_from_clip(row: dict, num_repeats: int, seed: int, epoch: int, augment: dict | None) -> list[dict]:
    """num_repeats random frame pairs of one clip (seeded by clip id, epoch and repeat)."""
    from preprocessing.frame_pairs import make_pair

    out = []
    for r in range(num_repeats):
        rng = np.random.default_rng([seed, epoch, r, int.from_bytes(str(row["clip_id"]).encode()[-8:].rjust(8, b"\0"), "big")])
        source, driving, i, j = make_pair(list(row["frames"]), rng, augment)
        out.append({"source": source, "driving": driving, "video_id": row["video_id"], "clip_id": row["clip_id"],
                    "person_id": row["person_id"], "i_source": i, "i_driving": j})
    return out


def _pairs_by_person(group: dict, num_repeats: int, seed: int, epoch: int, augment: dict | None) -> dict:
    """id sampling: num_repeats pairs per person, each from one of the person's clips at random."""
    from preprocessing.frame_pairs import make_pair

    pid = str(group["person_id"][0])
    rng = np.random.default_rng([seed, epoch, int.from_bytes(pid.encode()[-8:].rjust(8, b"\0"), "big")])
    rows: dict[str, list] = {k: [] for k in ("source", "driving", "video_id", "clip_id", "person_id", "i_source",
                                             "i_driving")}
    for _ in range(num_repeats):
        k = int(rng.integers(len(group["clip_id"])))
        source, driving, i, j = make_pair(list(group["frames"][k]), rng, augment)
        for key, v in (("source", source), ("driving", driving), ("video_id", group["video_id"][k]),
                       ("clip_id", group["clip_id"][k]), ("person_id", pid), ("i_source", i), ("i_driving", j)):
            rows[key].append(v)
    return {k: np.stack(v) if k in ("source", "driving") else np.asarray(v) for k, v in rows.items()}


def frame_pairs_dataset(path: str, split: str = "train", num_repeats: int = 1, id_sampling: bool = False,
                        seed: int = 0, epoch: int = 0, augment: dict | None = None, endpoint: str | None = None,
                        shuffle: bool = True) -> ray.data.Dataset:
    """A Ray Dataset of training pairs (source/driving H×W×3 uint8 + ids) streamed from the shards."""
    from preprocessing.shards import list_shards

    files = list_shards(path, split, endpoint)
    fs, _ = storage.resolve(files[0], endpoint)
    ds = ray.data.read_parquet([storage.resolve(f, endpoint)[1] for f in files], filesystem=fs)
    ds = ds.select_columns(["video_id", "clip_id", "person_id", "split", "frames"])
    ds = ds.filter(lambda r: r["split"] == split)  # shards are per split already; this guards folders of files
    kwargs = {"num_repeats": num_repeats, "seed": seed, "epoch": epoch, "augment": augment}
    if id_sampling:
        ds = ds.groupby("person_id").map_groups(_pairs_by_person, fn_kwargs=kwargs, batch_format="numpy")
    else:
        ds = ds.flat_map(_pairs_from_clip, fn_kwargs=kwargs)
    return ds.random_shuffle(seed=seed + epoch) if shuffle else ds
