"""The job without Ray: synthetic and CSV inputs, faults in the error table, shard packing and resuming."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from preprocessing import dataset_writer as dw
from preprocessing import shards
from preprocessing.config import PreprocessConfig
from preprocessing.cropping import resize_keep_aspect
from preprocessing.sources import collect_tasks, raw_video_index
from services.video_read import read_frames
from tests.conftest import damaged_shards, shard_clips


def cfg_for(input_: str, output, **kw) -> PreprocessConfig:
    base = {"input": str(input_), "output": str(output), "kind": "none", "size": 64, "min_frames": 8,
            "frame_format": "png"}
    return PreprocessConfig(**{**base, **kw})


def shard_digests(root) -> dict[str, str]:
    return {s["file"]: s["sha256"] for s in shards.read_manifest(str(root))["shards"]}


def test_synthetic_folder_end_to_end(synthetic_dir, tmp_path):
    result = dw.run_local(cfg_for(synthetic_dir, tmp_path / "out"))
    assert (result["num_videos"], result["num_clips"], result["num_frames"], result["num_errors"]) == (6, 6, 144, 0)
    clips = {c["video_id"]: c for c in shard_clips(str(tmp_path / "out"))}
    meta = {r["video_id"]: r for r in csv.DictReader(open(synthetic_dir / "metadata.csv"))}
    for vid, clip in clips.items():
        assert (clip["person_id"], clip["split"]) == (meta[vid]["person_id"], meta[vid]["split"])
        assert clip["crop_box"] == [0, 0, 64, 64] and clip["frames"].shape == (24, 64, 64, 3)
    np.testing.assert_array_equal(clips["synth0003"]["frames"], read_frames(synthetic_dir / "synth0003.mp4"))
    assert damaged_shards(str(tmp_path / "out")) == []
    assert not list((tmp_path / "out" / "_work").rglob("*.parquet"))  # work files removed after the commit
    assert not (tmp_path / "out" / ".preprocess.lock").exists()


def test_a_second_run_into_the_same_output_is_refused_while_the_first_writes(synthetic_dir, tmp_path):
    """Two runs into one --output (the same command in two terminals): the second's merge found the first's parts
    gone, a traceback, exit 1. It is refused before it writes; a holder that dies, even by SIGKILL, holds no more."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from services.errors import UserError

    cfg = cfg_for(synthetic_dir, tmp_path / "out")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from preprocessing.config import PreprocessConfig; "
         "from preprocessing.dataset_writer import writing_alone; "
         f"lock = writing_alone(PreprocessConfig(input='x', output={str(cfg.output)!r})); lock.__enter__(); "
         "print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UserError, match=rf"^--output {cfg.output}: a preprocess run is writing there now \(pid "
                                            rf"{holder.pid} on .*; {cfg.output}/.preprocess.lock\): wait for it to end"):
            dw.run_local(cfg)
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".preprocess.lock"]  # nothing written
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
    assert dw.run_local(cfg)["num_clips"] == 6


def test_metadata_csv_is_cropped_exactly_and_missing_videos_recorded(tmp_path, shared_data):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(shared_data / "face_talk_d.mp4", raw / "vidA.mp4")  # 410×412 at 25 fps
    table = tmp_path / "vox-metadata.csv"
    rows = [  # reference frame 820×824 at 50 fps: the bbox halves, the frame range halves
        "video_id,start,end,bbox,fps,width,height,partition,person_id",
        "vidA,6,18,100-80-300-290,50,820,824,train,id10001",
        "vidMissing,0,50,10-10-200-200,25,640,360,test,id10002",
        ".vidHidden,0,50,10-10-200-200,25,640,360,test,id10002",  # its work file was a hidden one: never listed
    ]
    table.write_text("\n".join(rows) + "\n")
    result = dw.run_local(cfg_for(table, tmp_path / "out", video_dir=str(raw), size=48))
    (clip,) = list(shard_clips(str(tmp_path / "out")))
    assert (clip["video_id"], clip["person_id"], clip["split"]) == ("vidA", "id10001", "train")
    assert (clip["start_frame"], clip["end_frame"], clip["crop_box"]) == (3, 9, [50, 40, 150, 145])
    source = read_frames(raw / "vidA.mp4", 9)[3:9]
    expected = np.stack([resize_keep_aspect(f[40:145, 50:150], 48) for f in source])
    np.testing.assert_array_equal(clip["frames"], expected)
    errors = sorted(shards.read_errors(str(tmp_path / "out")), key=lambda e: e["video_id"])
    assert [(e["video_id"], e["stage"]) for e in errors] == [(".vidHidden", "missing"), ("vidMissing", "missing")]
    assert "vidMissing" in errors[1]["message"] and result["num_errors"] == 2


def _touch(folder, *names) -> None:
    for name in names:
        (folder / name).write_bytes(b"x")


def test_raw_videos_are_found_by_one_listing_with_the_extension_order_kept(tmp_path, moto_s3):
    _touch(tmp_path, "a.mkv", "a.mp4", "b.webm", "c.MP4", ".d.mp4", "e.mp4.part", "notes.txt")
    index = raw_video_index(str(tmp_path), None)
    assert index == {"a": f"{tmp_path}/a.mp4", "b": f"{tmp_path}/b.webm"}  # .mp4 before .mkv; case kept exact
    assert raw_video_index(str(tmp_path / "absent"), None) == {}

    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_s3["endpoint"], region_name="us-east-1")
    prefix = f"raw-{tmp_path.name}"  # the session's bucket is shared: a folder of this test's own
    for key in ("v1.mov", "v1.avi", "v2.mkv", "deeper/v3.mp4"):
        s3.put_object(Bucket=moto_s3["bucket"], Key=f"{prefix}/{key}", Body=b"x")
    root = f"s3://{moto_s3['bucket']}/{prefix}"
    assert raw_video_index(root, None) == {"v1": f"{root}/v1.mov", "v2": f"{root}/v2.mkv"}  # not recursive


def test_the_original_fomms_png_datasets_preprocess_as_their_videos_would_locally_and_on_s3(tmp_path, moto_s3):
    """A folder of clips kept as folders of frames named like videos (train/id#yt#start#end.mp4/0000000.png, the
    original FOMM's png format) gives a clip per folder, split by its train/test folder; a folder of other pictures
    is no video. On S3 each clip's frames are downloaded and give the same clips."""
    import boto3
    from PIL import Image

    rng = np.random.default_rng(1)
    raw = tmp_path / "vox-png"
    for split, name in (("train", "id1#yt1#000010#000022.mp4"), ("test", "id2#yt2#000000#000012.mp4")):
        (raw / split / name).mkdir(parents=True)
        for i, frame in enumerate(rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)):
            Image.fromarray(frame).save(raw / split / name / f"{i:07d}.png")
    (raw / "train" / "thumbs").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(raw / "train" / "thumbs" / "cover.jpg")
    local = dw.run_local(cfg_for(raw, tmp_path / "out", min_frames=8, min_size=32))
    clips = {c["clip_id"]: (c["split"], c["frames"].shape[0], c["frames"].tobytes()) for c in shard_clips(str(tmp_path / "out"))}
    assert {k: v[0] for k, v in clips.items()} == {"train__id1#yt1#000010#000022#000#000000#000012": "train",
                                                   "test__id2#yt2#000000#000012#000#000000#000012": "test"}
    assert local["num_errors"] == 0 and [v[1] for v in clips.values()] == [12, 12]

    s3 = boto3.client("s3", endpoint_url=moto_s3["endpoint"], region_name="us-east-1")
    prefix = f"png-{tmp_path.name}"  # the session's bucket is shared: a folder of this test's own
    for file in (f for f in raw.rglob("*") if f.is_file()):
        s3.upload_file(str(file), moto_s3["bucket"], f"{prefix}/{file.relative_to(raw)}")
    dw.run_local(cfg_for(f"s3://{moto_s3['bucket']}/{prefix}", tmp_path / "from_s3", min_frames=8, min_size=32))
    assert {c["clip_id"]: (c["split"], c["frames"].shape[0], c["frames"].tobytes())
            for c in shard_clips(str(tmp_path / "from_s3"))} == clips


def test_the_original_fomms_one_image_clips_preprocess_to_their_frames_locally_and_on_s3(tmp_path, moto_s3):
    """Clips kept as one .png of square frames side by side (the original's BAIR set: train/x.png, 64·k × 64) give a
    clip each, frame for frame, split by folder; a square or 3:2 picture, and the frames of a frame folder (2:1
    here), are not such clips. On S3 the images' headers are read in one batch and give the same clips."""
    import boto3
    from PIL import Image

    rng = np.random.default_rng(3)
    raw, strips = tmp_path / "bair", {"train/a.png": 10, "test/b.png": 9}
    for name, k in strips.items():
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        frames = rng.integers(0, 256, (k, 64, 64, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate(list(frames), axis=1)).save(raw / name)
        strips[name] = frames
    Image.new("RGB", (64, 64)).save(raw / "train" / "cover.jpg")
    Image.new("RGB", (96, 64)).save(raw / "train" / "wide.png")
    (raw / "train" / "c.mp4").mkdir()  # a frame folder: its 2:1 frames are frames, not clips
    for i in range(9):
        frame = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
        Image.fromarray(frame).save(raw / "train" / "c.mp4" / f"{i:07d}.png")
    local = dw.run_local(cfg_for(raw, tmp_path / "out"))
    clips = {c["video_id"]: (c["split"], c["frames"]) for c in shard_clips(str(tmp_path / "out"))}
    assert sorted(clips) == ["test__b", "train__a", "train__c"] and local["num_errors"] == 0
    for name, frames in strips.items():
        split, got = clips[name.replace("/", "__").removesuffix(".png")]
        assert split == name.split("/")[0] and np.array_equal(got, frames)  # png frames, the whole 64² frame kept

    s3 = boto3.client("s3", endpoint_url=moto_s3["endpoint"], region_name="us-east-1")
    prefix = f"bair-{tmp_path.name}"  # the session's bucket is shared: a folder of this test's own
    for file in (f for f in raw.rglob("*") if f.is_file()):
        s3.upload_file(str(file), moto_s3["bucket"], f"{prefix}/{file.relative_to(raw)}")
    dw.run_local(cfg_for(f"s3://{moto_s3['bucket']}/{prefix}", tmp_path / "from_s3"))
    from_s3 = {c["video_id"]: (c["split"], c["frames"]) for c in shard_clips(str(tmp_path / "from_s3"))}
    assert sorted(from_s3) == sorted(clips)
    assert all(from_s3[v][0] == clips[v][0] and np.array_equal(from_s3[v][1], clips[v][1]) for v in clips)


@pytest.mark.parametrize(("row", "problem"), [
    ("vidA,18,6,100-80-300-290,50,820,824", r"line 2 \(video vidA\): frame range start 18, end 6 is empty or reversed"),
    ("vidA,6,6,100-80-300-290,50,820,824", "frame range start 6, end 6 is empty"),
    ("vidA,6,18,900-80-1000-290,50,820,824", "bbox 900-80-1000-290 is outside the 820×824 frame"),
    ("vidA,6,18,300-80-100-290,50,820,824", "bbox 300-80-100-290 has no area"),
    # each was a traceback (an unpacking error, an AttributeError on a missing field) or a clip timed at NaN fps
    ("vidA,6,18,100-80-300,50,820,824", r"bbox 100-80-300 is not 4 numbers \(expected left-top-right-bottom\)"),
    ("vidA,6,18,100-80-300-290,nan,820,824", "fps nan is not a positive number"),
    ("vidA,6,18", r"line 2 \(video vidA\): not the header's 7 fields"),
    ("vidA,6,18,100-80-300-290,50,820,824,extra", r"line 2 \(video vidA\): not the header's 7 fields"),
    # the bbox written another way was "bad value (invalid literal for int() with base 10: '100,80,300,290')"
    ('vidA,6,18,"100,80,300,290",50,820,824', r"line 2 \(video vidA\): bbox '100,80,300,290' is not 4 whole "
                                              r"numbers \(expected left-top-right-bottom, e.g. 112-54-374-316\)"),
])
def test_a_metadata_row_that_names_no_clip_is_refused_not_dropped(tmp_path, row, problem):
    table = tmp_path / "vox-metadata.csv"
    table.write_bytes(f"\ufeffvideo_id,start,end,bbox,fps,width,height\n{row}\n".encode())  # with Excel's BOM
    with pytest.raises(ValueError, match=f"vox-metadata.csv {problem}" if "line" in problem else problem):
        collect_tasks(cfg_for(table, tmp_path / "out"))


def test_a_metadata_csv_as_a_spreadsheet_saves_it_gives_the_tasks_the_original_one_does(tmp_path):
    """';' between the fields, 'Video_ID' and ' Start' in the header, a BOM: read as the original's comma CSV is
    (it was "not a metadata CSV")."""
    rows = ["vidA,6,18,100-80-300-290,50,820,824,test", "vidB,0,30,0-0-64-64,25,64,64,train"]
    plain, saved = tmp_path / "plain" / "meta.csv", tmp_path / "saved" / "meta.csv"
    for path, text in ((plain, "video_id,start,end,bbox,fps,width,height,partition\n" + "\n".join(rows)),
                       (saved, "\ufeffVideo_ID; Start;End;BBox;FPS;Width;Height;Partition\n"
                               + "\n".join(r.replace(",", ";") for r in rows))):
        path.parent.mkdir()
        path.write_text(text + "\n")
    strip = [(t.video_id, t.split, t.segments) for t in collect_tasks(cfg_for(plain, tmp_path / "o1"))]
    assert strip == [(t.video_id, t.split, t.segments) for t in collect_tasks(cfg_for(saved, tmp_path / "o2"))]
    assert [(v, s, len(g)) for v, s, g in strip] == [("vidA", "test", 1), ("vidB", "train", 1)]


def test_corrupt_and_zero_frame_videos_go_to_errors(synthetic_dir, tmp_path, corrupt_video, zero_frame_video):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("synth0000.mp4", "synth0001.mp4"):
        shutil.copy(synthetic_dir / name, inputs / name)
    shutil.copy(corrupt_video, inputs / "corrupt.mp4")
    shutil.copy(zero_frame_video, inputs / "zero.mp4")
    (inputs / "notes.mp4").write_text("not a video")
    result = dw.run_local(cfg_for(inputs, tmp_path / "out", max_frames=None))
    assert (result["num_clips"], result["num_errors"]) == (2, 3)
    errors = {e["video_id"]: e for e in shards.read_errors(str(tmp_path / "out"))}
    assert set(errors) == {"corrupt", "zero", "notes"}
    assert errors["corrupt"]["stage"] == "decode" and "truncated or corrupt" in errors["corrupt"]["message"]
    assert errors["zero"]["stage"] == "probe" and "zero-frame" in errors["zero"]["message"]
    assert errors["notes"]["path"].endswith("notes.mp4") and "not a readable video" in errors["notes"]["message"]
    assert {c["video_id"] for c in shard_clips(str(tmp_path / "out"))} == {"synth0000", "synth0001"}


def test_shards_respect_the_target_size(synthetic_dir, tmp_path):
    dw.run_local(cfg_for(synthetic_dir, tmp_path / "out", shard_bytes=60_000))
    manifest = shards.read_manifest(str(tmp_path / "out"))
    assert len(manifest["shards"]) > 2
    for s in manifest["shards"]:
        assert s["bytes"] == (tmp_path / "out" / s["file"]).stat().st_size
        assert s["rows"] == pq.read_metadata(tmp_path / "out" / s["file"]).num_rows
        assert s["rows"] == 1 or s["bytes"] < 60_000 + 8_000  # over only when a single video is larger
    assert sum(s["rows"] for s in manifest["shards"]) == 6


def test_interrupted_run_resumes_to_identical_shards(synthetic_dir, tmp_path):
    full = dw.run_local(cfg_for(synthetic_dir, tmp_path / "full", shard_bytes=60_000))
    cfg = cfg_for(synthetic_dir, tmp_path / "resumed", shard_bytes=60_000)
    layout = dw.Layout(cfg.output)
    for task in collect_tasks(cfg)[:3]:  # the first run dies after three videos, before packing shards
        dw.run_video(task, cfg, layout)
    (tmp_path / "resumed" / "shards" / "train").mkdir(parents=True)
    (tmp_path / "resumed" / "shards" / "train" / ".shard-00000.parquet.1234.tmp").write_bytes(b"half")
    assert dw.finished_videos(layout) == {"synth0000", "synth0001", "synth0002"}
    resumed = dw.run_local(cfg)
    assert shard_digests(tmp_path / "resumed") == shard_digests(tmp_path / "full")
    assert resumed["num_clips"] == full["num_clips"] == 6
    files = sorted(p.relative_to(tmp_path / "resumed").as_posix() for p in (tmp_path / "resumed" / "shards").rglob("*"))
    assert files == sorted(["shards/train", "shards/test", *shard_digests(tmp_path / "full")])  # no leftovers
    before = (tmp_path / "resumed" / "_manifest.json").read_bytes()
    again = dw.run_local(cfg)  # a finished job re-run changes nothing
    assert again["num_clips"] == 6 and (tmp_path / "resumed" / "_manifest.json").read_bytes() == before


def test_manifest_counts_match_the_shards(synthetic_dir, tmp_path):
    dw.run_local(cfg_for(synthetic_dir, tmp_path / "out"))
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    for s in manifest["shards"]:
        data = (tmp_path / "out" / s["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == s["sha256"]
    assert manifest["totals"]["clips"] == sum(v["clips"] for v in manifest["videos"].values()) == 6
    assert manifest["config"]["kind"] == "none"


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="^--kind cats: expected one of face, person, none$"):
        PreprocessConfig(input="x", output="y", kind="cats")
    with pytest.raises(ValueError, match="^--fps nan: must be a finite number$"):  # `x <= 0` is False for NaN
        PreprocessConfig(input="x", output="y", target_fps=float("nan"))


def test_a_job_that_makes_no_clip_fails(tmp_path, repo_root, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("pipeline_preprocess", repo_root / "pipelines" / "preprocess.py")
    preprocess = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preprocess)
    code = preprocess.main(["--input", "synthetic:1", "--output", str(tmp_path / "out"), "--kind", "none",
                            "--size", "32", "--min-frames", "1000", "--no-ray"])  # every track too short
    out, err = capsys.readouterr()
    assert code == 2 and err == (f"preprocess: error: --output {tmp_path / 'out'}: no clips were made (none of the "
                                 f"1 videos has ≥ 1000 frames (--min-frames) of ≥ 64 px (--min-size))\n")
    assert "manifest" not in out and "result" not in out, out  # was: a summary naming files never written
    # no dataset of 0 clips, and no folder: the run made it, and nothing in it was worth keeping (the synthetic
    # input's videos were left in _work/); other settings start afresh
    assert not (tmp_path / "out").exists()
    assert preprocess.main(["--input", "synthetic:1", "--output", str(tmp_path / "out"), "--kind", "none",
                            "--size", "32", "--no-ray"]) == 0
    # why, for the other mixes: the summary's num_videos counts the videos read, num_errors those that failed
    failed = {"num_videos": 2, "num_errors": 1, "errors": "out/errors.parquet"}
    cfg = preprocess.PreprocessConfig(input="x", output="out", kind="face")
    assert preprocess.why_nothing(cfg, failed) == (
        "1 of 3 videos failed: out/errors.parquet; none of the other 2 videos held a face track of ≥ 32 frames "
        "(--min-frames) of ≥ 64 px (--min-size); --kind none keeps the whole frame")
    assert preprocess.why_nothing(cfg, {**failed, "num_videos": 0, "num_errors": 3}) == (
        "3 of 3 videos failed: out/errors.parquet")
    # a metadata CSV's rows name the clips: a range past its video's end was blamed on the tracks
    rows = preprocess.PreprocessConfig(input="vox-metadata.csv", output="out", kind="none")
    assert preprocess.why_nothing(rows, {**failed, "num_errors": 0}) == (
        "no row of the 2 videos named ≥ 32 frames (--min-frames) inside its video, at ≥ 64 px (--min-size): check "
        "each row's start and end (frames at its fps) against its video's length")


def test_a_job_whose_every_video_failed_counts_them_as_the_error_table_does(tmp_path, repo_root, corrupt_video,
                                                                          capsys):
    """Was: "1 of 0 videos failed …; none of the other -1 videos has …" (the count of videos read was taken for
    the count of all)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pipeline_preprocess", repo_root / "pipelines" / "preprocess.py")
    preprocess = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preprocess)
    out = tmp_path.parent / f"{tmp_path.name}-out"
    code = preprocess.main(["--input", str(corrupt_video.parent), "--output", str(out), "--kind", "none", "--no-ray"])
    assert (code, capsys.readouterr().err) == (2, f"preprocess: error: --output {out}: no clips were made (1 of 1 "
                                                  f"videos failed: {out / 'errors.parquet'})\n")


def test_a_rerun_with_other_clip_settings_is_refused_before_it_mixes_two_kinds_of_clips(tmp_path, repo_root, capsys):
    """A re-run resumes: it skips the finished videos, so with another --min-frames (or --kind, --size, …) those
    would keep clips made the old way (it made 0 clips where a fresh --kind none made 4). Same settings resume."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pipeline_preprocess", repo_root / "pipelines" / "preprocess.py")
    preprocess = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preprocess)
    out = tmp_path / "out"
    args = ["--input", "synthetic:2", "--output", str(out), "--kind", "none", "--size", "32", "--no-ray"]
    assert preprocess.main([*args, "--min-frames", "16"]) == 0
    manifest = (out / "_manifest.json").read_bytes()
    capsys.readouterr()
    assert preprocess.main([*args, "--min-frames", "20", "--fps", "10"]) == 2
    assert capsys.readouterr().err == (
        f"preprocess: error: --output {out}: holds a dataset made with other settings (--min-frames 16, now 20; "
        f"--fps None, now 10.0); choose a new --output, or the same settings to resume or extend it\n")
    assert (out / "_manifest.json").read_bytes() == manifest
    assert preprocess.main([*args, "--min-frames", "16", "--workers", "1"]) == 0  # workers: not a clip setting


def test_a_run_stopped_before_its_manifest_still_refuses_other_clip_settings(tmp_path, repo_root, capsys):
    """A run killed after some videos (part files, no manifest yet): its parts record their settings, so a re-run
    with another --size is refused as for a finished dataset, and the same settings go on from the parts."""
    import importlib.util

    from preprocessing import dataset_writer as dw

    spec = importlib.util.spec_from_file_location("pipeline_preprocess", repo_root / "pipelines" / "preprocess.py")
    preprocess = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preprocess)
    out = tmp_path / "out"
    args = ["--input", "synthetic:2", "--output", str(out), "--kind", "none", "--no-ray"]
    cfg = preprocess.build(preprocess.parse_args([*args, "--size", "32"]))
    layout, todo = dw.pending(cfg)
    dw.run_video(todo[0], cfg, layout)  # what a run killed after its first video leaves
    assert not (out / "_manifest.json").exists() and len(list((out / "_work" / "parts").iterdir())) == 1
    assert preprocess.main([*args, "--size", "48"]) == 2
    assert capsys.readouterr().err == (
        f"preprocess: error: --output {out}: holds a dataset made with other settings (--size 32, now 48); "
        f"choose a new --output, or the same settings to resume or extend it\n")
    assert not (out / "_manifest.json").exists()
    assert preprocess.main([*args, "--size", "32"]) == 0
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["size"] == 32 and manifest["totals"]["videos"] == 2


def test_a_video_whose_file_name_is_not_utf8_is_named_before_any_work(tmp_path, shared_data):
    """A name with bytes that are not UTF-8 (from an old archive, a Windows share) failed as "--input: 'utf-8' codec
    can't encode characters in position 3-4", naming no file; it is named as its bytes read."""
    import os

    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(shared_data / "face_talk_a.mp4", raw / "fine.mp4")
    shutil.copy(shared_data / "face_talk_b.mp4", os.fsdecode(os.fsencode(raw) + b"/bad\xff\xfename.mp4"))
    with pytest.raises(ValueError, match=r"raw/bad\\xff\\xfename.mp4: a file name that is not UTF-8 \(a clip's ids "
                                         r"and paths are stored as text: rename the file\)$"):
        collect_tasks(cfg_for(raw, tmp_path / "out"))


def test_a_damaged_work_file_of_a_stopped_run_is_made_again_not_a_line_naming_no_file(tmp_path, repo_root, capsys):
    """A part file cut short (parts are written whole: a disk's damage, a copy stopped halfway): the re-run said
    "--output: Parquet magic bytes not found in footer …", naming no file. It is removed, its video made again."""
    import importlib.util

    from preprocessing import dataset_writer as dw

    spec = importlib.util.spec_from_file_location("pipeline_preprocess", repo_root / "pipelines" / "preprocess.py")
    preprocess = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preprocess)
    out = tmp_path / "out"
    args = ["--input", "synthetic:2", "--output", str(out), "--kind", "none", "--no-ray", "--size", "32"]
    cfg = preprocess.build(preprocess.parse_args(args))
    layout, todo = dw.pending(cfg)
    dw.run_video(todo[0], cfg, layout)
    [part] = (out / "_work" / "parts").iterdir()
    part.write_bytes(part.read_bytes()[:100])
    assert preprocess.main(args) == 0
    assert f"note: {part}: a damaged work file (" in capsys.readouterr().out
    assert json.loads((out / "_manifest.json").read_text())["totals"]["videos"] == 2
