"""Every pipeline's bad inputs, table-driven: exit 2, one line on stderr naming the flag or file, no traceback,
nothing written. Each case is a real `python pipelines/X.py` process that must fail before Ray starts.

`python tests/e2e/test_bad_input.py --print-table` runs the same cases and prints the table in
docs/reliability.md (the messages as the pipelines print them), so the document and the test cannot drift apart.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    pipeline: str  # pipelines/<pipeline>.py
    kind: str  # missing, empty, corrupt, wrong type, wrong config, unreachable service
    what: str  # the mistake, in words
    args: str  # the command line; {name} are the prepared inputs of `prepare`
    names: str  # what the one error line must contain: the flag or the file


TRAIN = "--config {tiny} --data {shard} --storage {w}/store"
EVAL = "--config {tiny} --checkpoint {ckpt} --data {shard} --out {w}/eval --workers 0"
BENCH = "--config {tiny} --checkpoints {ckpts} --data {shard} --out {w}/bench --workers 0"
CASES = [
    Case("preprocess", "missing", "input folder does not exist", "--input {w}/nothing --output {w}/ds", "--input"),
    Case("preprocess", "empty", "input folder holds no video", "--input {empty_dir} --output {w}/ds", "--input"),
    Case("preprocess", "corrupt", "metadata CSV without its columns", "--input {pairs_bad} --output {w}/ds", "--input"),
    Case("preprocess", "wrong type", "--size is not a number", "--input {empty_dir} --output {w}/ds --size big",
         "--size"),
    Case("preprocess", "wrong type", "--size below the minimum", "--input synthetic:2 --output {w}/ds --size 4",
         "--size"),
    Case("preprocess", "wrong type", "--output is a file", "--input synthetic:2 --output {empty_file}", "--output"),
    Case("preprocess", "unreachable service", "S3 endpoint down",
         "--input synthetic:2 --output s3://bucket/ds --endpoint http://127.0.0.1:{dead}", "--output s3://bucket/ds"),
    Case("train", "missing", "no shards at --data", TRAIN.replace("{shard}", "{w}/nothing"), "--data"),
    Case("train", "empty", "--data folder without shards", TRAIN.replace("{shard}", "{empty_dir}"), "--data"),
    Case("train", "corrupt", "--data is not Parquet", TRAIN.replace("{shard}", "{corrupt_parquet}"), "--data"),
    Case("train", "missing", "config file does not exist", TRAIN.replace("{tiny}", "{w}/nothing.yaml"), "--config"),
    Case("train", "wrong config", "misspelt key in the config", TRAIN.replace("{tiny}", "{typo_yaml}"),
         "typo.yaml"),
    Case("train", "wrong config", "a value of the wrong type in the config",
         TRAIN.replace("{tiny}", "{wrongtype_yaml}"), "wrongtype.yaml"),
    Case("train", "wrong config", "--set of a key the config lacks", TRAIN + " --set train_params.nope=1", "--set"),
    Case("train", "wrong type", "--workers is not a number", TRAIN + " --workers two", "--workers"),
    Case("train", "unreachable service", "MLflow server down", TRAIN + " --tracking-uri http://127.0.0.1:{dead}",
         "--tracking-uri"),
    Case("train", "wrong type", "--storage is a file", TRAIN.replace("{w}/store", "{empty_file}"), "--storage"),
    Case("tune", "missing", "search space file does not exist", TRAIN + " --space {w}/nothing.yaml", "--space"),
    Case("tune", "wrong config", "search space with an unknown key", TRAIN + " --space {bad_space}",
         "bad_space.yaml"),
    Case("tune", "missing", "no shards at --data", TRAIN.replace("{shard}", "{w}/nothing"), "--data"),
    Case("evaluate", "missing", "checkpoint does not exist", EVAL.replace("{ckpt}", "{w}/nothing.pth.tar"),
         "--checkpoint"),
    Case("evaluate", "corrupt", "checkpoint is not a checkpoint", EVAL.replace("{ckpt}", "{corrupt_ckpt}"),
         "corrupt.pth.tar"),
    Case("evaluate", "wrong config", "checkpoint does not fit the config",
         EVAL.replace("{tiny}", "{demo_config}"), "tiny.pth.tar"),
    Case("evaluate", "empty", "no clips in the --split", EVAL + " --split train", "--data"),
    Case("evaluate", "missing", "--checkpoint models:/… with no MLflow store there",
         EVAL.replace("{ckpt}", "models:/fomm/1") + " --tracking-uri sqlite:///{w}/nothing.db", "--checkpoint"),
    Case("train", "wrong config", "--init-from a checkpoint that does not fit the config",
         TRAIN.replace("{tiny}", "{demo_config}") + " --init-from {ckpt}", "tiny.pth.tar"),
    Case("evaluate", "unreachable service", "MLflow server down", EVAL + " --tracking-uri http://127.0.0.1:{dead}",
         "--tracking-uri"),
    Case("evaluate", "missing", "SQLite tracking store in a missing folder",
         EVAL + " --tracking-uri sqlite:///{w}/nothing/mlflow.db", "--tracking-uri"),
    Case("evaluate", "wrong type", "--max-error-fraction above 1", EVAL + " --max-error-fraction 2",
         "--max-error-fraction"),
    Case("evaluate", "wrong type", "--extractor-options is not a mapping", EVAL + " --extractor-options [1,2]",
         "--extractor-options"),
    Case("benchmark", "empty", "checkpoint folder without checkpoints", BENCH.replace("{ckpts}", "{empty_dir}"),
         "--checkpoints"),
    Case("benchmark", "wrong config", "newest checkpoint does not fit the config",
         BENCH.replace("{tiny}", "{demo_config}"), "tiny.pth.tar"),
    Case("benchmark", "wrong type", "--metrics names an unknown metric", BENCH + " --metrics l1,psnr", "--metrics"),
    Case("animate_batch", "missing", "pairs CSV does not exist",
         "--pairs {w}/nothing.csv --config {tiny} --checkpoint {ckpt}", "--pairs"),
    Case("animate_batch", "empty", "pairs CSV is empty", "--pairs {empty_file} --config {tiny} --checkpoint {ckpt}",
         "--pairs"),
    Case("animate_batch", "corrupt", "pairs CSV without source,driving,output",
         "--pairs {pairs_bad} --config {tiny} --checkpoint {ckpt}", "--pairs"),
    Case("animate_batch", "wrong config", "checkpoint does not fit the config",
         "--pairs {pairs} --config {demo_config} --checkpoint {ckpt}", "tiny.pth.tar"),
    Case("demo", "wrong type", "--videos below the minimum", "--out {w}/demo --videos 3", "--videos"),
    Case("demo", "wrong config", "misspelt key in the config", "--out {w}/demo --config {typo_yaml}", "typo.yaml"),
    Case("demo", "wrong type", "--out is a file", "--out {empty_file}", "--out"),
    # the families of issue 23: NaN/inf, overwriting an input, requests that would wait forever, nothing to do
    Case("preprocess", "wrong type", "--fps is NaN", "--input synthetic:2 --output {w}/ds --fps nan", "--fps"),
    Case("preprocess", "overwrite", "--output inside the --input folder", "--input {empty_dir} --output "
         "{empty_dir}/ds", "--output"),
    Case("train", "hang", "GPUs this machine does not have", TRAIN + " --gpus-per-worker 64",
         "--gpus-per-worker"),
    Case("train", "wrong config", "--set zero epochs (nothing to train)", TRAIN + " --set train_params.num_epochs=0",
         "--set"),
    Case("train", "wrong config", "--set a width the network cannot be built with (block_expansion above max_features)",
         TRAIN + " --set model_params.kp_detector_params.block_expansion=128", "--set"),
    Case("train", "wrong config", "--set a GAN term on frames too small for the discriminator",
         TRAIN + " --set train_params.loss_weights.generator_gan=1 --set dataset_params.frame_shape=[32,32,3]",
         "--set"),
    Case("train", "corrupt", "a checkpoint given as --config", TRAIN.replace("{tiny}", "{ckpt}"), "tiny.pth.tar"),
    Case("train", "overwrite", "--storage inside the --data folder",
         TRAIN.replace("{w}/store", "{shard_dir}/run").replace("{shard}", "{shard_dir}"), "--storage"),
    Case("tune", "wrong config", "search space with loguniform from 0", TRAIN + " --space {log0_space}",
         "log0.yaml"),
    Case("tune", "wrong config", "--val-clips 0 (nothing to rank the trials by)",
         TRAIN.replace("{shard}", "{train_only}") + " --val-clips 0", "--val-clips 0"),
    Case("tune", "wrong config", "--data without held-out clips to rank the trials by",
         TRAIN.replace("{shard}", "{train_only}"), "--val-split test"),
    Case("evaluate", "overwrite", "--out inside the --data folder",
         EVAL.replace("{w}/eval", "{shard_dir}/eval").replace("{shard}", "{shard_dir}"), "--out"),
    Case("benchmark", "wrong type", "--threshold is infinite", BENCH + " --threshold inf", "--threshold"),
    Case("animate_batch", "wrong type", "--smooth is NaN", "--pairs {pairs} --config {tiny} --checkpoint {ckpt} --smooth nan",
         "--smooth"),
    # the probe's families: typos of flags, swapped files, outputs that would mix with or replace inputs
    Case("train", "typo", "--epoch for --epochs (a flag is taken only as spelt)", TRAIN + " --epoch 2", "--epoch"),
    Case("train", "typo", "--tracking-uri whose port is no number (urllib's ValueError: a traceback)",
         TRAIN + " --tracking-uri http://127.0.0.1:50OO", "--tracking-uri"),
    Case("train", "typo", "--tracking-uri a server's HOST:PORT without http:// (taken for a folder store)",
         TRAIN + " --tracking-uri 127.0.0.1:5000", "--tracking-uri"),
    Case("demo", "typo", "--video for --videos", "--out {w}/demo --video 10", "--video"),
    Case("evaluate", "swapped", "the config given as --checkpoint", EVAL.replace("{ckpt}", "{tiny}"),
         "not a checkpoint"),
    Case("evaluate", "swapped", "--config and --checkpoint swapped", "--config {ckpt} --checkpoint {tiny} --data "
         "{shard} --out {w}/eval --workers 0", "a YAML config, not a checkpoint"),
    Case("benchmark", "swapped", "the config given as --checkpoints", BENCH.replace("{ckpts}", "{tiny}"),
         "not a checkpoint"),
    Case("evaluate", "overwrite", "--out is the folder holding the checkpoint", EVAL.replace("{w}/eval", "{ckpts}"),
         "holds the input --checkpoint"),
    Case("demo", "overwrite", "--out is the folder holding the config", "--out {w} --config {typo_yaml}",
         "holds the input --config"),
    Case("animate_batch", "overwrite", "a pair's output is its own driving video",
         "--pairs {pairs_same} --config {tiny} --checkpoint {ckpt}", "line 2: output"),
    Case("animate_batch", "wrong type", "--errors is a folder", "--pairs {pairs} --config {tiny} --checkpoint {ckpt} "
         "--errors {empty_dir}", "--errors"),
    Case("tune", "wrong type", "--out is a folder", TRAIN + " --space {space} --out {empty_dir}", "--out"),
    Case("evaluate", "wrong type", "--extractor-options of an unknown backend",
         EVAL + ' --extractor-options {{"dlib68":{{"a":1}}}}', "--extractor-options"),
    Case("evaluate", "wrong type", "--extractor-options with a NaN option",
         EVAL + ' --extractor-options {{"dlib-68":{{"a":.nan}}}}', "--extractor-options"),
    Case("animate_batch", "overwrite", "two pairs write one output file",
         "--pairs {pairs_twice} --config {tiny} --checkpoint {ckpt}", "line 3: output"),
    Case("preprocess", "hang", "--ray-address where no Ray cluster answers (ray.init would wait minutes)",
         "--input synthetic:1 --output {w}/ds --ray-address 127.0.0.1:{dead}", "--ray-address"),
    Case("evaluate", "wrong type", "--ray-address is a dashboard URL (what `ray job submit` takes)",
         EVAL + " --ray-address http://127.0.0.1:{dead}", "--ray-address"),
    Case("train", "wrong type", "--ray-address is a Ray Client address (Ray Data fails in such a driver, after Ray "
         "and the run have started)", TRAIN + " --ray-address ray://127.0.0.1:{dead}", "--ray-address"),
    Case("preprocess", "typo", "--output gs://… (only local paths and s3://: it was a local folder 'gs:')",
         "--input synthetic:1 --output gs://bucket/ds", "--output"),
    Case("preprocess", "typo", "--output s3:/… (a slash short: it was a local folder 's3:', and exit 0)",
         "--input synthetic:1 --output s3:/bucket/ds", "--output"),
    Case("train", "typo", "--data s3:// without a bucket", "--config {tiny} --data s3:///shards --storage {w}/store",
         "--data"),
    Case("preprocess", "empty", "--output is empty (an unset shell variable: it would be the current folder)",
         "--input {empty_dir} --output ''", "--output"),
    Case("train", "empty", "--storage is empty (an unset shell variable)", TRAIN.replace("{w}/store", "''"),
         "--storage"),
    Case("animate_batch", "nan", "the checkpoint of a diverged run (NaN weights)",
         "--pairs {pairs} --config {tiny} --checkpoint {nan_ckpt}", "nan.pth.tar"),
    Case("train", "typo", "--storge for --storage (argparse's 'required: --storage' hid the typo)",
         "--config {tiny} --data {shard} --storge {w}/store", "did you mean --storage"),
    Case("train", "wrong config", "--set a network width of 0 (a traceback in a Ray worker)",
         TRAIN + " --set model_params.generator_params.block_expansion=0", "block_expansion must be positive"),
    Case("animate_batch", "empty", "a row without an output (Ray Data read the empty cell as 'nan': a video named nan)",
         "--pairs {pairs_blank} --config {tiny} --checkpoint {ckpt}", "line 2: no output"),
    Case("tune", "typo", "--out s3://… where a local file is written (it was a local folder 's3:')",
         TRAIN + " --space {space} --out s3://bucket/best.yaml", "--out"),
    Case("train", "wrong config", "--tracking-uri a folder (MLflow 3 refused it after the data was read)",
         TRAIN + " --tracking-uri {w}/mlruns", "--tracking-uri"),
    Case("animate_batch", "typo", "a misspelt visualizer_params.colormap (was ignored; the original fails on it)",
         "--pairs {pairs} --config {colormap_yaml} --checkpoint {ckpt}", "colormap.yaml"),
    Case("tune", "wrong type", "--storage s3://… (Ray Tune keeps its state on a local or shared path)",
         TRAIN.replace("{w}/store", "s3://bucket/runs") + " --space {space}", "--storage"),
    Case("tune", "wrong type", "--storage s3a://… (it was a local folder 's3a:', and exit 0)",
         TRAIN.replace("{w}/store", "s3a://bucket/runs") + " --space {space}", "--storage s3a://bucket/runs: a sweep"),
    Case("evaluate", "corrupt", "a shard whose footer reads but whose pages are damaged (a traceback)",
         EVAL.replace("{shard}", "{damaged_shard}"), "damaged.parquet: a damaged clip shard"),
    Case("train", "corrupt", "--tracking-uri a file that is no SQLite database (MLflow retried it for 100 s, 40 "
         "warnings, then a traceback)", TRAIN + " --tracking-uri sqlite:///{typo_yaml}", "is not a SQLite database"),
    Case("train", "wrong config", "a crop_param (the original's RandomCrop) too small for the networks, which train "
         "on its window (a traceback in every worker)", TRAIN + " --set dataset_params.augmentation_params.crop_param"
         ".size=[8,8]", "crop_param.size, the frames trained on"),
    Case("train", "wrong config", "a resize_param without a crop_param (pairs of unequal sizes in one batch: a "
         "traceback in the worker)", TRAIN + " --set dataset_params.augmentation_params.resize_param.ratio=[0.5,2]",
         "it needs a crop_param"),
    Case("train", "typo", "--model-name with a '/' (MLflow refused the name once the training had ended, in a line "
         "naming no flag)", TRAIN + " --model-name team/fomm", "--model-name team/fomm: not a name MLflow"),
    Case("evaluate", "overwrite", "--tracking-uri another application's SQLite database (MLflow added its ~50 "
         "tables to the user's file)", EVAL + " --tracking-uri sqlite:///{app_db}", "another application's SQLite"),
    Case("preprocess", "swapped", "--input a dataset preprocess made (the copies of its videos in _work/ were "
         "preprocessed again)", "--input {dataset} --output {w}/ds", "--input"),
    Case("train", "hang", "--data a named pipe (PyArrow waited for a writer forever, SIGTERM did not end it)",
         TRAIN.replace("{shard}", "{pipe}"), "--data"),
    Case("preprocess", "hang", "--input a named pipe (taken for a video; FFmpeg's open may wait for a writer)",
         "--input {pipe} --output {w}/ds", "--input"),
    Case("preprocess", "swapped", "--input the config (taken for a video: Ray started, then the clip failed)",
         "--input {tiny} --output {w}/ds", "--input"),
    Case("preprocess", "wrong type", "--input a still image (a one-frame 'video': Ray started, then no clip)",
         "--input {still} --output {w}/ds", "--input"),
    Case("preprocess", "overwrite", "--output the folder of the one --input video (the dataset was written among the "
         "raw videos, and the folder could not be an --input again)", "--input {w}/raw/a.mp4 --output {w}/raw",
         "--output"),
    Case("tune", "overwrite", "--out the --init-from checkpoint (the best config replaced it, exit 0)",
         TRAIN + " --space {space} --init-from {ckpt} --out {ckpt}", "is the input --init-from"),
    Case("tune", "overwrite", "--out the --tracking-uri's SQLite store (replaced by the best config; the sweep then "
         "hung on a read-only database)", TRAIN + " --space {space} --tracking-uri sqlite:///{w}/ml.db --out {w}/ml.db",
         "is the input --tracking-uri"),
    Case("tune", "overwrite", "--out a file that exists (a file is never overwritten)",
         TRAIN + " --space {space} --out {pairs}", "exists (a file is never overwritten"),
    Case("animate_batch", "overwrite", "--errors a row's driving video (replaced by the error table, exit 0)",
         "--pairs {pairs} --config {tiny} --checkpoint {ckpt} --errors {w}/b.mp4", "is the input line 2's driving"),
    Case("animate_batch", "overwrite", "--errors a file that exists and is no error table (replaced, exit 0)",
         "--pairs {pairs} --config {tiny} --checkpoint {ckpt} --errors {empty_file}", "is no error table"),
    Case("animate_batch", "wrong type", "a row's output is a folder (counted 'skipped': nothing made, exit 0)",
         "--pairs {pairs_dir} --config {tiny} --checkpoint {ckpt}", "is a folder (expected the video file"),
    Case("animate_batch", "hang", "--num-cpus 1e9 (a local Ray of 10**9 CPUs never started)",
         "--pairs {pairs} --config {tiny} --checkpoint {ckpt} --num-cpus 1e9", "--num-cpus"),
    Case("demo", "wrong config", "a batch_size its 2 training workers cannot share (found once preprocessing had "
         "run, naming a --workers flag the demo lacks)", "--out {w}/demo --config {bs3_yaml}",
         "batch_size 3 must divide evenly over the demo's 2"),
    Case("evaluate", "hang", "num_down_blocks: 10**20 in the config (the size check's 2**n never ended)",
         EVAL.replace("{tiny}", "{huge_yaml}"), "num_down_blocks must be at most 16"),
    Case("train", "wrong config", "num_kp: 10**20 in the config (a traceback inside torch)",
         TRAIN.replace("{tiny}", "{huge_kp_yaml}"), "num_kp must be at most 2147483647"),
    # the third probe's: outputs that a pair would "skip" having made nothing, paths through symlinks to nothing
    Case("animate_batch", "empty", "a row's output is an existing empty file (counted 'skipped', exit 0)",
         "--pairs {pairs_zero} --config {tiny} --checkpoint {ckpt}", "exists but is empty (0 bytes)"),
    Case("animate_batch", "typo", "a row's output s3:/… (a local folder 's3:' was made, the pair counted done)",
         "--pairs {pairs_s3typo} --config {tiny} --checkpoint {ckpt}", "a slash is missing after 's3:'"),
    Case("preprocess", "missing", "--output a symlink to a missing folder (mkdir's FileExistsError traceback)",
         "--input synthetic:1 --output {dangling}", "which does not exist"),
    Case("benchmark", "swapped", "--metrics akd with --keypoints none (the gate passed it unmeasured, exit 0)",
         BENCH + " --metrics akd --keypoints none", "akd is not measured with --keypoints none"),
    Case("evaluate", "wrong type", "--tracking-uri an in-memory SQLite store (exit 0 with a run id no store keeps)",
         EVAL + " --tracking-uri sqlite:///:memory:", "an in-memory SQLite store"),
    Case("demo", "overwrite", "--out a folder of other files (the demo's were written among them)",
         "--out {dataset}", "not an earlier demo's"),
    Case("evaluate", "overwrite", "--out a folder of other files (the user's files of its names were replaced, exit 0)",
         EVAL.replace("{w}/eval", "{dataset}"), "not an earlier evaluation's"),
]


def dead_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(root: Path) -> dict[str, str]:
    """The inputs the cases name: good ones (a tiny config, shard, checkpoint) and broken ones."""
    import pyarrow.parquet as pq
    import torch

    from evaluation.reconstruction import ModelSource
    from fomm.checkpoint import checkpoint_bytes
    from preprocessing.synthetic import write_synthetic_shards

    root.mkdir(parents=True, exist_ok=True)
    tiny = REPO / "configs" / "tiny-64.yaml"
    shard = write_synthetic_shards(root / "shards", num_videos=2, num_frames=4, seed=1)
    train_only = write_synthetic_shards(root / "train_only", num_videos=2, num_frames=4, seed=2, split="train")
    model = ModelSource.resolve(tiny, None).load()
    ckpt = root / "ckpts" / "tiny.pth.tar"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(checkpoint_bytes(generator=model.generator, kp_detector=model.kp_detector))
    with torch.no_grad():
        next(model.generator.parameters()).fill_(float("nan"))
    (root / "nan.pth.tar").write_bytes(checkpoint_bytes(generator=model.generator, kp_detector=model.kp_detector))
    damaged = bytearray(Path(shard).read_bytes())  # the first data page's header zeroed, the footer intact
    first_page = min(pq.ParquetFile(shard).metadata.row_group(0).column(i).data_page_offset for i in range(3))
    damaged[first_page:first_page + 64] = bytes(64)
    (root / "damaged.parquet").write_bytes(damaged)
    (root / "empty_dir").mkdir()
    (root / "empty_file").write_bytes(b"")
    (root / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    (root / "corrupt.pth.tar").write_bytes(random.Random(0).randbytes(256))  # the same bytes on every run
    text = tiny.read_text()
    (root / "typo.yaml").write_text(text.replace("num_kp:", "num_kps:"))
    (root / "wrongtype.yaml").write_text(text.replace("num_kp: 5", "num_kp: five"))
    (root / "colormap.yaml").write_text(text.replace("'gist_rainbow'", "'gist_rainbw'"))
    (root / "bs3.yaml").write_text(text.replace("batch_size: 2", "batch_size: 3"))
    (root / "huge.yaml").write_text(text.replace("num_down_blocks: 2", f"num_down_blocks: {10**20}"))
    (root / "huge_kp.yaml").write_text(text.replace("num_kp: 5", f"num_kp: {10**20}"))
    (root / "bad_space.yaml").write_text("metric: val_l1\nmode: min\nspaces: {}\n")
    (root / "log0.yaml").write_text("space:\n  train_params.lr_generator:\n    loguniform: [0, 1.0e-3]\n")
    (root / "pairs_bad.csv").write_text("image,video\na.png,b.mp4\n")
    (root / "pairs.csv").write_text("source,driving,output\na.png,b.mp4,c.mp4\n")
    (root / "pairs_same.csv").write_text("source,driving,output\na.png,b.mp4,./b.mp4\n")
    (root / "pairs_blank.csv").write_text("source,driving,output\na.png,b.mp4,\n")
    (root / "made.mp4").mkdir()  # a folder named as a video
    (root / "pairs_dir.csv").write_text("source,driving,output\na.png,b.mp4,made.mp4\n")
    (root / "dataset").mkdir()
    (root / "raw").mkdir()
    shutil.copy(REPO.parent / "shared" / "data" / "face_talk_a.mp4", root / "raw" / "a.mp4")
    sqlite3.connect(root / "app.db").execute("create table users (id, name)").connection.close()
    os.mkfifo(root / "pipe.parquet")
    (root / "dataset" / "_manifest.json").write_text('{"version": 1, "shards": []}')
    (root / "zero.mp4").write_bytes(b"")
    (root / "pairs_zero.csv").write_text("source,driving,output\na.png,b.mp4,zero.mp4\n")
    (root / "pairs_s3typo.csv").write_text("source,driving,output\na.png,b.mp4,s3:/bucket/c.mp4\n")
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "pairs_twice.csv").write_text("source,driving,output\na.png,b.mp4,out/c.mp4\nd.png,e.mp4,./out//c.mp4\n")
    files = {"empty_dir": "empty_dir", "empty_file": "empty_file", "corrupt_parquet": "corrupt.parquet",
             "corrupt_ckpt": "corrupt.pth.tar", "typo_yaml": "typo.yaml", "wrongtype_yaml": "wrongtype.yaml",
             "colormap_yaml": "colormap.yaml", "huge_yaml": "huge.yaml", "bs3_yaml": "bs3.yaml", "huge_kp_yaml": "huge_kp.yaml",
             "bad_space": "bad_space.yaml", "pairs_bad": "pairs_bad.csv", "pairs": "pairs.csv", "log0_space": "log0.yaml",
             "pairs_same": "pairs_same.csv", "nan_ckpt": "nan.pth.tar",
             "pairs_twice": "pairs_twice.csv", "pairs_blank": "pairs_blank.csv", "pairs_dir": "pairs_dir.csv", "damaged_shard": "damaged.parquet",
             "dataset": "dataset", "pipe": "pipe.parquet", "app_db": "app.db",
             "pairs_zero": "pairs_zero.csv", "pairs_s3typo": "pairs_s3typo.csv", "dangling": "dangling"}
    return {"w": str(root), "tiny": str(tiny), "still": str(REPO.parent / "shared" / "data" / "face_source_a.jpg"),
            "demo_config": str(REPO / "configs" / "demo-64.yaml"),
            "space": str(REPO / "configs" / "sweeps" / "loss-weights.yaml"),
            "shard": str(shard), "train_only": str(train_only), "shard_dir": str(Path(shard).parent), "ckpt": str(ckpt), "ckpts": str(Path(ckpt).parent), "dead": str(dead_port()),
            **{key: str(root / name) for key, name in files.items()}}


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run_case(case: Case, inputs: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    args = ["" if a == "''" else a for a in case.args.format(**inputs).split()]  # '': an empty argument
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RAY_ADDRESS": ""}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, str(REPO / "pipelines" / f"{case.pipeline}.py"), *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def run_all(root: Path, workers: int = 3) -> tuple[dict[str, str], set[str], list[tuple[Case, subprocess.CompletedProcess]]]:
    """(prepared inputs, the files under root before the cases ran, each case with its finished process)."""
    inputs = prepare(root / "w")
    cwd = root / "cwd"  # a default ./mlruns or ./eval_output would appear here
    cwd.mkdir()
    before = files_under(root)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda c: run_case(c, inputs, cwd), CASES))
    return inputs, before, list(zip(CASES, results))


def test_cases_cover_every_pipeline_and_kind() -> None:
    assert len(CASES) >= 25
    assert {c.pipeline for c in CASES} == {p.stem for p in (REPO / "pipelines").glob("*.py")}
    assert {c.kind for c in CASES} == {"missing", "empty", "corrupt", "wrong type", "wrong config",
                                       "unreachable service", "overwrite", "hang", "typo", "swapped", "nan"}


def test_every_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path) -> None:
    start = time.perf_counter()
    inputs, before, results = run_all(tmp_path)
    failures = []
    for case, done in results:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        problem = None
        if done.returncode != 2:
            problem = f"exit {done.returncode}"
        elif "Traceback" in done.stderr + done.stdout:
            problem = "traceback"
        elif len(lines) != 1:
            problem = f"{len(lines)} lines on stderr"
        elif not lines[0].startswith(f"{case.pipeline}: error: ") or case.names not in lines[0]:
            problem = f"the line does not name {case.names!r}"
        if problem:
            failures.append(f"{case.pipeline} [{case.what}]: {problem}\n{done.stderr[-1500:]}")
    assert not failures, "\n".join(failures)
    assert files_under(tmp_path) - before == set(), "a failed pipeline left files behind"
    assert files_under(tmp_path / "cwd") == set()  # no default ./mlruns, ./eval_output
    with contextlib.closing(sqlite3.connect(inputs["app_db"])) as app:  # the other application's database as it was
        assert app.execute("select name from sqlite_master").fetchall() == [("users",)]
    assert time.perf_counter() - start < 600


def test_debug_shows_the_traceback(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "pipelines" / "preprocess.py"), "--input",
                           str(tmp_path / "nothing"), "--output", str(tmp_path / "ds"), "--debug"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("preprocess: error: --input")


@pytest.mark.ray
def test_bad_input_through_ray_job_submit(ray_head, tmp_path) -> None:
    """The same contract as a Ray job: the job fails with the driver's exit status 2 and the one-line message."""
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "ray"), "job", "submit", "--address", ray_head["dashboard"], "--working-dir", str(REPO),
           "--", sys.executable, "pipelines/preprocess.py", "--input", str(tmp_path / "nothing"), "--output",
           str(tmp_path / "ds")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "0"}
    deadline = time.time() + 240
    transient = ("No available agent to submit job", "Connection aborted", "Failed to connect to Ray")
    while True:  # a fresh head takes a moment to register its job agent
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
        log = done.stdout + done.stderr
        if not any(t in log for t in transient) or time.time() > deadline:
            break
        time.sleep(2)
    assert done.returncode != 0, log[-3000:]
    assert "failed" in log.lower() and "Traceback" not in log, log[-3000:]
    # the job's log is printed twice: streamed, then again in the final status message
    errors = {line for line in log.splitlines() if "preprocess: error: " in line}
    assert errors == {f"preprocess: error: --input {tmp_path / 'nothing'}: no such folder or file (expected a "
                      "folder, glob or metadata CSV of videos)"}, log[-3000:]
    assert "Job entrypoint command failed with exit code 2" in log, log[-3000:]
    assert not (tmp_path / "ds").exists()


def print_table(root: Path) -> None:
    """The docs/reliability.md table: each case and the line its pipeline printed (prepared paths shown as <name>)."""
    inputs, _, results = run_all(root)
    names = sorted(((v, k) for k, v in inputs.items() if k not in ("dead",)), key=lambda vk: -len(vk[0]))
    print("| pipeline | kind | bad input | exit | message (stderr, the only line) |")
    print("|---|---|---|---|---|")
    ok = 0
    for case, done in results:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        message = lines[-1] if lines else "(none)"
        for value, key in names:
            message = message.replace(value, f"<{key}>")
        message = message.replace(inputs["dead"], "<port>").replace("|", "\\|")
        message = message if len(message) <= 220 else message[:219] + "…"  # the table only; stderr has it whole
        good = done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr
        ok += good
        print(f"| {case.pipeline} | {case.kind} | {case.what} | {done.returncode} | `{message}` |")
    print(f"\n{ok} of {len(results)} cases: one line, exit 2, no traceback")


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--print-table"]:
        sys.exit("usage: python tests/e2e/test_bad_input.py --print-table")
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="fomm-bad-input-") as tmp:
        print_table(Path(tmp))
