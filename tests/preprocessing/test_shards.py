"""Shard schema: records → Parquet → clips round trip, deterministic bytes, manifest and error readers."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocessing import shards
from preprocessing.shard_set import ShardSet
from tests.conftest import damaged_shards, shard_clips


def make_record(i: int, split: str = "train", frames: int = 3, fmt: str = "png") -> shards.ClipRecord:
    rng = np.random.default_rng(i)
    video = rng.integers(0, 255, (frames, 16, 16, 3), dtype=np.uint8)  # T×H×W×3
    return shards.ClipRecord(
        video_id=f"v{i}", clip_id=f"v{i}#000", person_id=f"p{i % 2}", split=split, fps=25.0, height=16, width=16,
        start_frame=10, end_frame=10 + frames, crop_box=(1, 2, 33, 34), source_path=f"/raw/v{i}.mp4",
        source_height=40, source_width=60, frames=[shards.encode_frame(f, fmt) for f in video], frame_format=fmt,
    )


def test_schema_columns():
    expected = {"video_id", "clip_id", "person_id", "split", "num_frames", "fps", "height", "width", "start_frame",
                "end_frame", "crop_box", "source_path", "source_height", "source_width", "frame_format", "frames"}
    assert set(shards.CLIP_SCHEMA.names) == expected
    assert shards.CLIP_SCHEMA.field("frames").type == pa.list_(pa.binary())
    assert shards.CLIP_SCHEMA.field("crop_box").type == pa.list_(pa.int32(), 4)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_encode_decode(fmt):
    rng = np.random.default_rng(0)
    smooth = np.repeat(np.repeat(rng.integers(0, 255, (2, 4, 4, 3), dtype=np.uint8), 8, 1), 8, 2)  # 2×32×32×3
    back = shards.decode_frames([shards.encode_frame(f, fmt) for f in smooth])
    assert back.shape == smooth.shape and back.dtype == np.uint8
    if fmt == "png":
        np.testing.assert_array_equal(back, smooth)  # lossless
    else:
        assert np.abs(back.astype(int) - smooth).mean() < 8


def test_round_trip_through_a_shard(tmp_path):
    records = [make_record(0), make_record(1, "test"), make_record(2)]
    info = shards.write_table_atomic(shards.records_to_table(records), str(tmp_path / "s.parquet"))
    assert info["rows"] == 3 and info["bytes"] == (tmp_path / "s.parquet").stat().st_size
    clips = list(shard_clips(str(tmp_path / "s.parquet")))
    assert [c["clip_id"] for c in clips] == ["v0#000", "v1#000", "v2#000"]
    c = clips[0]
    assert (c["video_id"], c["person_id"], c["split"], c["fps"], c["num_frames"]) == ("v0", "p0", "train", 25.0, 3)
    assert c["crop_box"] == [1, 2, 33, 34] and c["source_width"] == 60
    np.testing.assert_array_equal(c["frames"], shards.decode_frames(records[0].frames))
    assert [c["clip_id"] for c in shard_clips(str(tmp_path / "s.parquet"), split="test")] == ["v1#000"]
    meta_only = list(shard_clips(str(tmp_path), columns=["clip_id", "num_frames"]))
    assert [m["num_frames"] for m in meta_only] == [3, 3, 3] and "frames" not in meta_only[0]


def test_writes_are_deterministic_and_leave_no_temporaries(tmp_path):
    table = shards.records_to_table([make_record(0), make_record(1)])
    a = shards.write_table_atomic(table, str(tmp_path / "a.parquet"))
    b = shards.write_table_atomic(table, str(tmp_path / "b.parquet"))
    assert a["sha256"] == b["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet"]
    assert pq.read_metadata(tmp_path / "a.parquet").num_rows == 2


def test_manifest_errors_and_the_shard_set(tmp_path):
    root = tmp_path / "ds"
    (root / "shards" / "train").mkdir(parents=True)
    info = shards.write_table_atomic(shards.records_to_table([make_record(0)]),
                                     str(root / "shards" / "train" / "shard-00000.parquet"))
    manifest = {"shards": [{"file": "shards/train/shard-00000.parquet", "split": "train", **info}]}
    (root / "_manifest.json").write_text(json.dumps(manifest))
    assert shards.read_manifest(str(root))["shards"][0]["rows"] == 1
    opened = ShardSet.open(str(root))
    assert opened.uris() == [str(root / "shards" / "train" / "shard-00000.parquet")]
    assert opened.uris("test") == [] and opened.index("train").clip_ids == ("v0#000",)
    assert damaged_shards(str(root)) == []
    assert shards.read_errors(str(root)) == []
    errors = pa.Table.from_pylist([{"path": "/x.mp4", "video_id": "x", "stage": "decode", "message": "bad"}],
                                  schema=shards.ERROR_SCHEMA)
    shards.write_table_atomic(errors, str(root / "errors.parquet"))
    assert shards.read_errors(str(root)) == [{"path": "/x.mp4", "video_id": "x", "stage": "decode", "message": "bad"}]
    (root / "shards" / "train" / "shard-00000.parquet").write_bytes(b"tampered")
    assert damaged_shards(str(root)) == [str(root / "shards" / "train" / "shard-00000.parquet")]
    with pytest.raises(FileNotFoundError, match="no manifest"):
        shards.read_manifest(str(tmp_path / "elsewhere"))


@pytest.mark.parametrize(("text", "why"), [
    ('{"shards', "JSONDecodeError"), ("[1, 2]", "TypeError: list indices"), ('{"shards": [{"file": "a"}]}',
                                                                             "KeyError: 'split'"),
    ('{"shards": [], "videos": [1]}', "TypeError: 'videos' is not a mapping")])
def test_a_damaged_manifest_is_one_line_for_the_readers_and_for_a_resumed_preprocess(tmp_path, text, why):
    """An edited or damaged _manifest.json was a traceback: in train/evaluate (a list or a shard entry without its
    split) and in a preprocess resuming the dataset (any)."""
    from preprocessing.config import PreprocessConfig
    from preprocessing.dataset_writer import changed_settings
    from preprocessing.shard_set import require_shards
    from services.cli import UserError, user_input

    (tmp_path / "_manifest.json").write_text(text)
    damaged = rf"{tmp_path}/_manifest.json: a damaged dataset manifest \({why}"
    with pytest.raises(UserError, match=rf"^--data {tmp_path}: not readable as clip shards.*\({damaged}"):
        require_shards("--data", str(tmp_path))
    with pytest.raises(UserError, match=f"^--output: {damaged}"), user_input("--output"):
        changed_settings(PreprocessConfig(input="synthetic", output=str(tmp_path)))


def test_a_raw_video_given_as_data_is_named_with_the_command_that_makes_its_shards(tmp_path, shared_data):
    """A video given as --data was PyArrow's "Parquet magic bytes not found"; a folder named like one is no video."""
    from preprocessing.shard_set import require_shards
    from preprocessing.synthetic import write_synthetic_shards
    from services.cli import UserError

    video = str(shared_data / "face_talk_a.mp4")
    with pytest.raises(UserError, match=rf"^--data {video}: a video, not clip shards.*--input {video} --output"):
        require_shards("--data", video)
    with pytest.raises(UserError, match=rf"^--data {shared_data}: a folder of videos, no shards of split 'train' "
                                        rf"\(make them with python pipelines/preprocess.py --input {shared_data} "):
        require_shards("--data", str(shared_data), "train")  # the raw videos' folder: 'no shards' said not why
    folder = write_synthetic_shards(tmp_path / "clips.mp4", num_videos=2, size=32, num_frames=4, split="train")
    assert require_shards("--data", str(folder.parent), "train").uris() == [str(folder)]


def test_a_half_written_shard_among_good_ones_is_named_before_any_job(tmp_path):
    from preprocessing.shard_set import require_shards
    from preprocessing.synthetic import write_synthetic_shards
    from services.cli import UserError

    good = write_synthetic_shards(tmp_path / "shards", num_videos=2, size=32, num_frames=4, split="train")
    half = good.parent / "train-00009.parquet"
    half.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match=rf"^--data {half}: not readable as clip shards"):
        require_shards("--data", str(good.parent), "train")
    half.unlink()
    assert require_shards("--data", str(good.parent), "train").uris() == [str(good)]


def test_clips_smaller_than_the_models_frames_are_named_as_they_would_be_upsampled(tmp_path, capsys):
    """32-pixel clips under a 64-pixel config trained and evaluated on silently upsampled frames."""
    from preprocessing.shard_set import require_shards
    from preprocessing.synthetic import write_synthetic_shards

    good = write_synthetic_shards(tmp_path / "shards", num_videos=2, size=32, num_frames=4, split="train")
    require_shards("--data", str(good.parent), "train", frame_shape=(64, 64, 3))
    assert capsys.readouterr().out == (f"note: --data {good.parent}: clips of 32×32 below the config's frame_shape "
                                       "64×64: each frame is upsampled to it (preprocess with --size 64, or use a "
                                       "config of the clips' size)\n")
    for shape in ((32, 32, 3), (16, 24), None):  # the clips' size, or smaller: resized down or kept, nothing said
        require_shards("--data", str(good.parent), "train", frame_shape=shape)
    assert capsys.readouterr().out == ""
