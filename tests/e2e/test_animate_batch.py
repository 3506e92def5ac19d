"""animate.batch (pipelines/animate_batch.py): the per-row function without Ray (local and moto S3), then the
Ray Data job."""

import csv
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from animate import batch as batch_job
from animate import batch_checks
from fomm.animator import Animator
from services import storage, user_csv
from services.failures import environment_failure
from services.video_read import probe_video, read_frames
from services.video_write import write_video
from tests.conftest import as_a_shell_starts, fill_disk, last_line

REPO = Path(__file__).resolve().parents[2]
FRAMES = 4


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_data) -> Path:
    """Short real driving clips (with audio) and real source photos in one folder."""
    root = tmp_path_factory.mktemp("pairs")
    for name in ("face_talk_b", "face_talk_c"):
        src = shared_data / f"{name}.mp4"
        write_video(root / f"{name}.mp4", read_frames(src, FRAMES), probe_video(src).fps, audio_from=src)
    for name in ("face_source_d.jpg", "face_source_e.jpg"):
        (root / name).write_bytes((shared_data / name).read_bytes())
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 then nothing")
    return root


@pytest.fixture(scope="module")
def animator(tiny_config_path) -> Animator:
    return Animator.from_config(tiny_config_path, random_init=True, batch_size=4)


def batch(*rows: tuple[str, str, str]) -> dict[str, np.ndarray]:
    return {c: np.array([r[i] for r in rows], dtype=object) for i, c in enumerate(("source", "driving", "output"))}


def test_rows_are_animated_skipped_or_recorded_without_ray(inputs, animator, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a cell as on the command line: ~ and file:// too
    rows = batch(("face_source_d.jpg", "face_talk_b.mp4", str(tmp_path / "b.mp4")),
                 ("face_source_e.jpg", "broken.mp4", str(tmp_path / "broken.mp4")),
                 (f"file://{inputs / 'face_source_e.jpg'}", "face_talk_c.mp4", "~/c.mp4"))
    out = batch_job.animate_rows(rows, animator, {}, base=str(inputs))
    assert out["status"].tolist() == ["done", "failed", "done"]
    assert out["error"][0] == "" and out["error"][1].startswith(f"{inputs / 'broken.mp4'}: not a readable video")
    info = probe_video(tmp_path / "b.mp4")
    assert (info.num_frames, info.fps, info.width, info.has_audio) == (FRAMES, 30.0, 64, True)
    again = batch_job.animate_rows(rows, animator, {}, base=str(inputs))
    assert again["status"].tolist() == ["skipped", "failed", "skipped"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.mp4", "home"]
    assert [p.name for p in (tmp_path / "home").iterdir()] == ["c.mp4"] and not (inputs / "~").exists()


def test_a_full_disk_stops_the_rows_instead_of_failing_each(inputs, animator, small_disk):
    """Every later pair would fail as well: the error is raised (the job ends with one line), not recorded per row."""
    fill_disk(small_disk)
    rows = batch(("face_source_d.jpg", "face_talk_b.mp4", str(small_disk / "b.mp4")),
                 ("face_source_e.jpg", "face_talk_c.mp4", str(small_disk / "c.mp4")))
    with pytest.raises(OSError) as raised:
        batch_job.animate_rows(rows, animator, {}, base=str(inputs))
    assert environment_failure(raised.value) == f"{small_disk / 'b.mp4'}: no space left on the device"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no half-written output


def test_rows_on_s3(inputs, animator, moto_s3, tmp_path, monkeypatch):
    """The endpoint given (pipelines/animate_batch.py --endpoint), none in the environment."""
    endpoint, bucket = moto_s3["endpoint"], f"s3://{moto_s3['bucket']}/animate"
    for name in ("AWS_ENDPOINT_URL", "FOMM_S3_ENDPOINT"):
        monkeypatch.delenv(name)
    for name in ("face_source_d.jpg", "face_talk_c.mp4"):
        storage.write_bytes(f"{bucket}/in/{name}", (inputs / name).read_bytes(), endpoint)
    rows = batch((f"{bucket}/in/face_source_d.jpg", f"{bucket}/in/face_talk_c.mp4", f"{bucket}/out/c.mp4"),
                 (f"{bucket}/in/missing.jpg", f"{bucket}/in/face_talk_c.mp4", f"{bucket}/out/missing.mp4"))
    out = batch_job.animate_rows(rows, animator, {"layout": "side-by-side"}, endpoint=endpoint)
    assert out["status"].tolist() == ["done", "failed"]
    assert f"{bucket}/in/missing.jpg" in out["error"][1]
    local = tmp_path / "c.mp4"
    local.write_bytes(storage.read_bytes(f"{bucket}/out/c.mp4", endpoint))
    info = probe_video(local)
    assert (info.num_frames, info.width, info.height, info.has_audio) == (FRAMES, 192, 64, True)
    assert not storage.exists(f"{bucket}/out/missing.mp4", endpoint)


def test_the_animate_modes_rows_read_clips_from_s3_and_write_there(synthetic_shards_64, animator, moto_s3, tmp_path):
    from preprocessing.shard_set import ShardSet

    endpoint, bucket = moto_s3["endpoint"], f"s3://{moto_s3['bucket']}/animate-mode"
    for shard in Path(synthetic_shards_64).rglob("*"):
        if shard.is_file():
            storage.write_bytes(f"{bucket}/data/{shard.relative_to(synthetic_shards_64)}", shard.read_bytes(), endpoint)
    clips = ShardSet.open(f"{bucket}/data", endpoint)
    rows = batch(("synth0002_000", "synth0005_000", f"{bucket}/out/a.mp4"),
                 ("synth0002_000", "synth9999_000", f"{bucket}/out/b.mp4"))
    out = batch_job.animate_rows(rows, animator, {}, endpoint=endpoint, clips=clips)
    assert out["status"].tolist() == ["done", "failed"] and "clip synth9999_000: not in the dataset" in out["error"][1]
    (tmp_path / "a.mp4").write_bytes(storage.read_bytes(f"{bucket}/out/a.mp4", endpoint))
    assert (probe_video(tmp_path / "a.mp4").num_frames, probe_video(tmp_path / "a.mp4").width) == (16, 64)
    assert not storage.exists(f"{bucket}/out/b.mp4", endpoint)


@pytest.mark.ray
def test_ray_job_animates_pairs_and_keeps_an_error_table(inputs, tiny_config_path, ray_local, tmp_path):
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "driving", "output"])
        w.writerow([inputs / "face_source_d.jpg", inputs / "face_talk_b.mp4", "out/b.mp4"])  # relative to CSV
        w.writerow([inputs / "face_source_e.jpg", inputs / "face_talk_c.mp4", "out/c.mp4"])
        w.writerow([inputs / "face_source_e.jpg", inputs / "broken.mp4", "out/broken.mp4"])
    # what a try killed mid-write left (its node lost: Ray Data retried the pair on another; a by-hand run on a
    # 2-node cluster left one such): gone when the job ends (start: the pipeline's entry, on the joined cluster)
    left = tmp_path / "out" / ".b.mp4.k1ll3d00.tmp.mp4"
    left.parent.mkdir()
    left.write_bytes(b"half a video")
    os.utime(left, (time.time() - 60,) * 2)
    summary = batch_job.start(str(pairs), str(tiny_config_path), random_init=True, concurrency=1, batch_size=4)
    assert summary == {"pairs": 3, "done": 2, "skipped": 0, "failed": 1, "errors": str(tmp_path / "pairs.errors.csv")}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.mp4", "c.mp4"]
    for name, fps in (("b", 30.0), ("c", 25.0)):
        info = probe_video(tmp_path / "out" / f"{name}.mp4")
        assert (info.num_frames, info.fps, info.width) == (FRAMES, fps, 64)
    table = list(csv.DictReader((tmp_path / "pairs.errors.csv").open()))
    assert len(table) == 1 and table[0]["driving"] == str(inputs / "broken.mp4")
    assert "not a readable video" in table[0]["error"]
    # more actors than the cluster's CPUs: as many as fit (a fixed pool of 50 waited forever, the CSV read too)
    rerun = batch_job.run(str(pairs), str(tiny_config_path), batch_job.read_pairs(str(pairs))[1], random_init=True,
                          concurrency=50)
    assert (rerun["done"], rerun["skipped"], rerun["failed"]) == (0, 2, 1)


def test_the_animate_modes_pairs_are_the_originals_draw_or_its_list_named_as_it_names_videos():
    from animate.dataset_pairs import listed_pairs, random_pairs
    from services.cli import UserError

    ids = [f"c{i}" for i in range(10)]
    drawn = random_pairs(ids, 4)  # 4 distinct cells of the first 4 clips' 4×4 grid, the same on every run
    assert drawn == random_pairs(ids, 4) and len(set(drawn)) == 4 and {c for p in drawn for c in p} <= set(ids[:4])
    assert sorted(random_pairs(ids[:2], 50)) == [(a, b) for a in ids[:2] for b in ids[:2]]  # the whole grid
    meta = [{"clip_id": f"test__id1#yt#000158#000328#00{k}#0#9", "video_id": "test__id1#yt#000158#000328"}
            for k in range(2)] + [{"clip_id": "synth0002_000", "video_id": "synth0002"}]
    with tempfile.TemporaryDirectory() as d:
        listed = Path(d) / "pairs.csv"
        listed.write_text("source,driving\nid1#yt#000158#000328.mp4,synth0002\nsynth0002_000,synth0002.mp4\n")
        assert listed_pairs(str(listed), meta, None) == [(meta[0]["clip_id"], "synth0002_000"),
                                                         ("synth0002_000", "synth0002_000")]
        listed.write_text("source,driving\nsynth0002,id9#gone.mp4\n")
        with pytest.raises(UserError, match=r"pairs.csv line 2: no clip of 'id9#gone.mp4' in --data's split$"):
            listed_pairs(str(listed), meta, None)
        listed.write_text("Source;Driving\nsynth0002;\n")  # a spreadsheet's header; an empty cell was a TypeError
        with pytest.raises(UserError, match=r"pairs.csv line 2: no driving \(every row names a source and a driving"):
            listed_pairs(str(listed), meta, None)
        listed.write_bytes(b"\x80\x81 not text")
        with pytest.raises(UserError, match=r"pairs.csv: not a text CSV with source,driving columns$"):
            listed_pairs(str(listed), meta, None)


@pytest.mark.ray
def test_the_animate_mode_animates_pairs_of_a_datasets_test_clips_into_out(synthetic_shards_64, tiny_config_path,
                                                                           ray_local, tmp_path):
    """The original's `run.py --mode animate`: pairs of the test split's clips, each animated into --out as
    DRIVING-SOURCE.mp4 at the clip's frame rate; the middle panel of side-by-side is the named driving clip."""
    from preprocessing.shards import decode_frames

    out = tmp_path / "animation"
    rows, table, clips = batch_checks.check_dataset(str(synthetic_shards_64), "test", str(out), 3, None,
                                                 str(tiny_config_path), None, True, None)
    assert table == str(out / "errors.csv") and not out.exists()  # checked and planned, nothing written
    summary = batch_job.start(None, str(tiny_config_path), rows=rows, clips=clips, errors=table,
                              random_init=True, concurrency=1, batch_size=4, crop="center", layout="side-by-side")
    assert (summary["pairs"], summary["done"], summary["failed"]) == (3, 3, 0)
    for row in rows:
        name = f"{row['driving']}-{row['source']}.mp4"
        assert row["output"] == str(out / name) and row["source"].startswith("synth")
        info = probe_video(out / name)
        assert (info.num_frames, info.fps, info.width, info.height) == (16, 25.0, 192, 64)
        driving = decode_frames(clips.rows([row["driving"]], ["clip_id", "frames"])[0]["frames"])
        assert np.abs(read_frames(out / name)[:, :, 64:128].astype(int) - driving).mean() < 8  # H.264 of JPEG
    assert list(csv.DictReader(Path(table).open())) == []
    again = batch_job.start(None, str(tiny_config_path), rows=rows, clips=clips, errors=table,
                            random_init=True, concurrency=1, crop="center")
    assert (again["done"], again["skipped"]) == (0, 3)


@pytest.mark.parametrize(("flags", "line"), [
    (["--data", "D", "--pairs", "p.csv"], "give --pairs CSV (rows of files) or --data DATASET (pairs of its clips), "
                                          "one of them"),
    (["--pairs", "p.csv", "--num-pairs", "5"], "--num-pairs: with --data only (--pairs names each row's output)"),
    (["--data", "D"], "--data needs --out, the folder of the animations"),
    (["--data", "D", "--out", "o", "--crop", "auto"], "--crop auto: not with --data (a dataset's clips were cropped "
                                                      "as preprocess made them)"),
])
def test_the_animate_modes_flags_are_checked_before_anything_runs(flags, line, tiny_config_path, tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "pipelines" / "animate_batch.py"), "--config",
                           str(tiny_config_path), "--random-init", *flags], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert (done.returncode, done.stderr.strip().splitlines()) == (2, [f"animate_batch: error: {line}"])
    assert list(tmp_path.iterdir()) == []


def test_pipeline_help():
    done = subprocess.run([sys.executable, str(REPO / "pipelines" / "animate_batch.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--pairs" in done.stdout and "error table" in done.stdout


@pytest.mark.parametrize(("flags", "motion"), [
    (["--data", "D", "--out", "o"], (None, None)),  # None: the config's normalization_params (fomm.animator)
    (["--data", "D", "--out", "o", "--absolute", "--adapt-scale"], (False, True)),
    (["--pairs", "p.csv"], (True, True)),  # rows of files: as `fomm animate` animates them
    (["--pairs", "p.csv", "--no-adapt-scale"], (True, False)),
])
def test_the_animate_mode_leaves_the_motion_to_the_config_unless_a_flag_sets_it(flags, motion, repo_root,
                                                                                tiny_config_path):
    from tests.evaluation.test_benchmark import load_pipeline

    stage = load_pipeline(repo_root, "animate_batch").STAGE
    job = stage.build(stage.parse_args(["--config", str(tiny_config_path), "--random-init", *flags]))
    assert (job["relative"], job["adapt_movement_scale"]) == motion


@pytest.mark.parametrize(("flags", "line"), [
    (["--smooth", "-1"], "animate_batch: error: argument --smooth: must be ≥ 0, got -1"),
    (["--smooth", "nan"], "animate_batch: error: argument --smooth: must be a finite number, got nan"),
    (["--device", "tpu9"], "animate_batch: error: --device 'tpu9': not a device (use cpu, cuda, cuda:N or mps)"),
    (["--relative", "--no-adapt-scale", "--subject", "-1"],
     "animate_batch: error: argument --subject: must be ≥ 0, got -1"),
])
def test_pipeline_takes_the_animation_flags_of_fomm_animate(flags, line, tiny_config_path, tmp_path):
    """The flags shared with `fomm animate` (animate.cli) are checked before anything runs: one line, exit 2."""
    done = subprocess.run([sys.executable, str(REPO / "pipelines" / "animate_batch.py"), "--pairs",
                           str(tmp_path / "p.csv"), "--config", str(tiny_config_path), "--random-init", *flags],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr.strip().splitlines()) == (2, [line])
    assert list(tmp_path.iterdir()) == []


def test_a_pairs_csv_without_rows_is_refused_before_ray(tiny_config_path, tmp_path):
    from services.cli import UserError

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("source,driving,output\n\n")
    with pytest.raises(UserError, match=r"^--pairs .*pairs.csv: no rows below the header \(nothing to animate\)$"):
        batch_checks.check_inputs(str(pairs), str(tiny_config_path), None, True, None)
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.csv"]


@pytest.mark.parametrize(("row", "fields"), [("a.jpg,b.mp4,o,ne.mp4", 3), ("a.jpg,b.mp4", 3)])
def test_a_row_of_more_or_fewer_fields_is_refused_before_ray(tiny_config_path, tmp_path, row, fields):
    """An unquoted comma in a path made Ray Data's CSV reader fail inside the job, with a traceback."""
    from services.cli import UserError

    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"source,driving,output\nx.jpg,y.mp4,z.mp4\n{row}\n")
    with pytest.raises(UserError, match=rf"^--pairs .*pairs.csv line 3: not the header's {fields} fields \(a comma "
                                        r"inside a path needs quotes\)$"):
        batch_checks.check_inputs(str(pairs), str(tiny_config_path), None, True, None)


@pytest.mark.parametrize(("row", "column"), [("a.jpg,b.mp4,", "output"), (",b.mp4,o.mp4", "source"), (",,", "source")])
def test_a_row_with_an_empty_cell_is_refused_before_ray(tiny_config_path, tmp_path, row, column):
    """Ray Data reads an empty cell as NaN: the video of 'a.jpg,b.mp4,' was written to a file named 'nan'."""
    from services.cli import UserError

    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"source,driving,output\nx.jpg,y.mp4,z.mp4\n{row}\n")
    with pytest.raises(UserError, match=rf"^--pairs .*pairs.csv line 3: no {column} \(every row names a source"):
        batch_checks.check_inputs(str(pairs), str(tiny_config_path), None, True, None)


def test_a_pairs_csv_as_a_spreadsheet_saves_it_is_read_and_another_header_is_shown_as_written(tiny_config_path,
                                                                                               tmp_path):
    """A space after a comma, capitals, ';' or a tab between the fields (they were refused); a header without the
    columns is shown as written: "no 'driving' column" alone hid why."""
    from services.cli import UserError

    pairs = tmp_path / "pairs.csv"
    for header, row in (("source, driving, output", "x.jpg, y.mp4, z.mp4"), ("Source,Driving,Output", "x.jpg,y.mp4,z.mp4"),
                        ("source;driving;output", "x.jpg;y.mp4;z.mp4"), ("source\tdriving\toutput", "x.jpg\ty.mp4\tz.mp4")):
        pairs.write_text(f"{header}\n{row}\n")
        [read] = batch_checks.check_inputs(str(pairs), str(tiny_config_path), None, True, None)
        assert {c: read[c].strip() for c in batch_job.COLUMNS} == {"source": "x.jpg", "driving": "y.mp4",
                                                                   "output": "z.mp4"}
    pairs.write_text("Src, drv, out\nx.jpg,y.mp4,z.mp4\n")
    with pytest.raises(UserError, match=rf"column \(expected a header with source,driving,output; it has "
                                        rf"{re.escape(str(['Src', ' drv', ' out']))}\)$"):
        batch_checks.check_inputs(str(pairs), str(tiny_config_path), None, True, None)


@pytest.mark.parametrize(("rows", "line"), [
    # one output through a symlinked folder: one of the two pairs was "skipped", made by neither
    (["x.jpg,y.mp4,out.mp4", "x.jpg,y.mp4,here/out.mp4"], r"line 3: output .*/here/out.mp4 is line 2's output too"),
    # a pair writing another's driving video, or one reading a pair's output (its order in Ray Data is any)
    (["x.jpg,y.mp4,o.mp4", "x.jpg,z.mp4,y.mp4"], r"line 3's output: .*/y.mp4 is line 2's driving \(an output must "),
    (["x.jpg,o.mp4,p.mp4", "x.jpg,y.mp4,o.mp4"], r"line 3's output: .*/o.mp4 is line 2's driving"),
    # existing outputs that are no video: each was "skipped", exit 0
    (["x.jpg,y.mp4,empty.mp4"], r"line 2: output .*/empty.mp4: exists but is empty \(0 bytes\), so it would be skipped"),
    (["x.jpg,y.mp4,pipe.mp4"], r"line 2: output .*/pipe.mp4: not a regular file \(a device or pipe\)"),
    (["x.jpg,y.mp4,gone.mp4"], r"line 2: output .*/gone.mp4: a symlink to .*/nowhere.mp4, which does not exist"),
    # a URL short of a slash was a local folder 's3:' (the pair "done"); another scheme named a joined path
    (["x.jpg,y.mp4,s3:/bucket/o.mp4"], r"line 2: output s3:/bucket/o.mp4: a slash is missing after 's3:'"),
    (["gs://b/x.jpg,y.mp4,o.mp4"], r"line 2: source gs://b/x.jpg: unsupported storage gs://"),
    # a NUL byte (a binary saved as text): Python's "embedded null byte", named no row
    (["x.jpg,y\x00.mp4,o.mp4"], r"line 2: driving y\x00.mp4: a NUL byte \(\\x00\) in the name"),
    (["x.jpg,y.mp4," + "a" * 234 + ".mp4"], r"line 2: output .*a.mp4: file name too long \(238 bytes; at most 237"),
])
def test_row_outputs_that_would_be_skipped_or_overwrite_are_refused_before_ray(tiny_config_path, tmp_path, rows, line):
    """Rows whose pair would make nothing yet count as done or skipped (exit 0), or write over another's input."""
    from services.cli import UserError

    (tmp_path / "here").symlink_to(tmp_path)
    (tmp_path / "empty.mp4").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe.mp4")
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("source,driving,output\n" + "\n".join(rows) + "\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UserError, match=rf"^--pairs .*pairs.csv {line}"):
        batch_checks.check_inputs(str(pairs), str(tiny_config_path), None, True, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_pairs_csv_saved_with_a_bom_is_read(tiny_config_path, tmp_path):
    """Excel writes UTF-8 CSVs with a byte-order mark: the header's first column is still `source`. Its "Unicode
    Text" is UTF-16 (either byte order) with tabs: it was "not a text CSV"."""
    pairs = tmp_path / "pairs.csv"
    table = "source,driving,output\nx.jpg,y.mp4,z.mp4\n"
    for data in (b"\xef\xbb\xbf" + table.encode(), table.replace(",", "\t").encode("utf-16"),
                 b"\xfe\xff" + table.encode("utf-16-be")):
        pairs.write_bytes(data)
        batch_checks.check_inputs(str(pairs), str(tiny_config_path), None, True, None)  # no "no 'source' column"
        assert user_csv.csv_table(data)[1] == [{"source": "x.jpg", "driving": "y.mp4", "output": "z.mp4"}]


def test_a_pairs_csv_with_a_field_no_csv_reader_takes_is_one_line(tiny_config_path, tmp_path):
    """A cell over the csv module's 128 KB (a file of NULs, a binary given as --pairs) was `_csv.Error` traceback."""
    from services.cli import UserError

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("source,driving,output\n" + "x" * 200_000 + ",y.mp4,z.mp4\n")
    with pytest.raises(UserError, match=rf"^--pairs {pairs}: not a text CSV with source,driving,output columns$"):
        batch_checks.check_inputs(str(pairs), str(tiny_config_path), None, True, None)


@pytest.mark.ray
def test_ctrl_c_while_an_actor_writes_leaves_no_temporary_beside_the_outputs(shared_data, tiny_config_path,
                                                                             tmp_path):
    """Ctrl-C on the job (its own local Ray, as on a laptop) while a pair's video is being written: exit 130, one
    line, and the output folder holds finished videos only, the temporary folder nothing of the job's. Before: the
    killed actor's .r1.mp4.XXXXXXXX.tmp.mp4 stayed there, and an empty fomm-animate-XXXXXXXX under /tmp."""
    out, pairs, tmp = tmp_path / "out", tmp_path / "pairs.csv", tmp_path / "tmp"
    out.mkdir()
    tmp.mkdir()
    with pairs.open("w", newline="") as f:
        csv.writer(f).writerows([("source", "driving", "output"), *(
            (shared_data / "face_source_a.jpg", shared_data / "face_talk_a.mp4", out / f"r{i}.mp4") for i in range(4))])
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {  # Ray's folder where it always is
        "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp), "RAY_TMPDIR": tempfile.gettempdir()}
    # an actor of more CPUs than the machine has: its local Ray holds it (it was refused after Ray's start-up lines)
    proc = subprocess.Popen([*as_a_shell_starts(REPO / "pipelines" / "animate_batch.py"), "--pairs", str(pairs),
                             "--config", str(tiny_config_path), "--random-init", "--crop", "center",
                             "--num-cpus", str(os.cpu_count() + 1)],
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline and not any(p.name.startswith(".") for p in out.iterdir()):
            time.sleep(0.1)
        assert proc.poll() is None and any(p.name.startswith(".") for p in out.iterdir()), "no video was being written"
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
        console = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and last_line(console) == "animate_batch: interrupted", console[-3000:]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert list(tmp.iterdir()) == []
    for video in out.iterdir():  # what was finished before Ctrl-C is whole
        assert probe_video(video).num_frames == probe_video(shared_data / "face_talk_a.mp4").num_frames


def test_a_rows_output_that_no_actor_could_write_is_refused_before_ray(tiny_config_path, tmp_path):
    """An output named .avi, or in a folder that cannot be written, failed inside Ray (exit 1, or 18 lines of Ray
    Data's own); the error table may not be a row's output either."""
    from services.cli import UserError
    from tests.conftest import read_only

    pairs = tmp_path / "pairs.csv"

    def refused(output: str, errors: str | None = None) -> str:
        pairs.write_text(f"source,driving,output\na.jpg,b.mp4,{output}\n")
        with pytest.raises(UserError) as err:
            batch_checks.check_inputs(str(pairs), str(tiny_config_path), None, True, errors)
        return str(err.value)

    assert refused("o.avi") == (f"--pairs {pairs} line 2: output {tmp_path / 'o.avi'}: not a video file name (use "
                                ".mp4, .mov, .mkv, .webm, .gif)")
    assert refused("o.mp4", errors=str(tmp_path / "o.mp4")).startswith(
        f"--errors {tmp_path / 'o.mp4'}: is the input line 2's output")
    (tmp_path / "locked").mkdir()
    with read_only(tmp_path / "locked"):
        assert refused("locked/o.mp4") == (f"--pairs {pairs} line 2: output {tmp_path / 'locked/o.mp4'}: cannot write "
                                           f"under {tmp_path / 'locked'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked", "pairs.csv"]
