"""`fomm animate|info|runs` on the real media: outputs that decode as asked, and one clear line per bad input."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from animate.cli import main
from animate.files import animate_file, read_source
from fomm.animator import Animator
from fomm.checkpoint import checkpoint_bytes
from services.video_read import iter_frames, probe_video, read_frames
from services.video_write import write_video
from tests.conftest import error_as_a_plain_user

CLIP_FRAMES = 8


def cut_clip(src: Path, dst: Path, num_frames: int) -> Path:
    """The first frames of a real video, with its audio trimmed to match."""
    return write_video(dst, read_frames(src, num_frames), probe_video(src).fps, audio_from=src)


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(f.samples for f in container.decode(stream)) / stream.rate


@pytest.fixture(scope="module")
def media(tmp_path_factory, shared_data, tiny_config_path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    m = {"clip": cut_clip(shared_data / "face_talk_d.mp4", root / "clip.mp4", CLIP_FRAMES),
         "source": shared_data / "face_source_c.jpg"}  # PNG bytes behind a .jpg name
    longer = cut_clip(shared_data / "face_talk_d.mp4", root / "clip12.mp4", 12)
    data = bytearray(longer.read_bytes())
    with av.open(str(longer)) as c:  # packet 8 of 12 overwritten with noise: decoding fails after 6 frames
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
    start, size = packets[8].pos, packets[8].size
    data[start:start + size] = np.random.default_rng(8).integers(0, 256, size, dtype=np.uint8).tobytes()
    (m.setdefault("corrupt", root / "corrupt.mp4")).write_bytes(bytes(data))
    real = (shared_data / "face_talk_d.mp4").read_bytes()  # index up front: a cut keeps 15 of 169 frames
    (m.setdefault("truncated", root / "truncated.mp4")).write_bytes(real[: len(real) // 10])
    clip = m["clip"].read_bytes()  # index at the end: a cut loses it
    (m.setdefault("truncated_index", root / "truncated_index.mp4")).write_bytes(clip[: len(clip) // 2])
    with av.open(str(root / "zero.avi"), "w") as c:  # a video stream without a single frame
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    m["zero"] = root / "zero.avi"
    (m.setdefault("text", root / "notes.mp4")).write_text("not a video\n")
    (m.setdefault("empty", root / "empty.png")).write_bytes(b"")
    (root / "pipes").mkdir()
    os.mkfifo(m.setdefault("fifo", root / "pipes" / "talk.mp4"))  # a named pipe: reading it would wait forever
    jpeg = (shared_data / "face_source_a.jpg").read_bytes()  # a JPEG cut off part-way: refused, never filled in
    (m.setdefault("cut_jpeg", root / "cut.jpg")).write_bytes(jpeg[: len(jpeg) * 2 // 3])
    face = np.asarray(Image.open(shared_data / "face_source_d.jpg").convert("RGB"))
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    rgba[:20] = 0  # a transparent band
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    m["rgba"] = root / "rgba.png"
    grey16 = (face.mean(axis=2) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(root / "grey16.png")
    m["grey16"] = root / "grey16.png"
    torch.manual_seed(0)
    tiny = Animator.from_config(tiny_config_path, random_init=True)
    m["tiny_ckpt"] = root / "tiny.pth.tar"
    m["tiny_ckpt"].write_bytes(checkpoint_bytes(generator=tiny.generator, kp_detector=tiny.kp_detector))
    (m.setdefault("bad_ckpt", root / "bad.pth.tar")).write_bytes(b"PK\x03\x04 half a zip")
    return m


def run(argv: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_animate_tiny_keeps_frames_fps_and_audio(media, tiny_config_path, tmp_path, capsys):
    out = tmp_path / "result.mp4"
    code, stdout, err = run(["animate", "--config", tiny_config_path, "--random-init", "--source", media["source"],
                             "--driving", media["clip"], "--out", out, "--quiet", "--batch-size", "3"], capsys)
    assert code == 0, err
    # said with the result: before it, on stderr, an error found once the model was built was a second line
    assert "RANDOM weights" in stdout and "RANDOM" not in err
    info = probe_video(out)
    assert (info.width, info.height, info.num_frames, info.fps) == (64, 64, CLIP_FRAMES, 25.0)
    assert info.has_audio and abs(audio_seconds(out) - CLIP_FRAMES / 25) <= 1 / 25
    assert len(list(iter_frames(out))) == CLIP_FRAMES
    assert f"{out}: {CLIP_FRAMES} frames 64×64 at 25 fps, audio kept" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.mp4"]  # no temporary left


@pytest.mark.parametrize("suffix", [".gif", ".webm"])
def test_animate_writes_a_gif_or_webm_as_the_out_names_it(suffix, media, tiny_config_path, tmp_path, capsys):
    """The original's users wrote result.gif; a GIF holds no sound, so the driving video's is left out, and said."""
    out = tmp_path / f"result{suffix}"
    code, stdout, err = run(["animate", "--config", tiny_config_path, "--random-init", "--source", media["source"],
                             "--driving", media["clip"], "--out", out, "--quiet"], capsys)
    assert code == 0, err
    with av.open(str(out)) as c:
        assert c.format.name == {".gif": "gif", ".webm": "matroska,webm"}[suffix]
    assert len(read_frames(out)) == CLIP_FRAMES and probe_video(out).has_audio == (suffix == ".webm")
    assert f"{out}: {CLIP_FRAMES} frames 64×64 at 25 fps, audio {'none' if suffix == '.gif' else 'kept'}" in stdout
    assert ("the driving video's audio is left out: a .gif file keeps none" in stdout) == (suffix == ".gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_a_gif_of_a_60_fps_driving_video_says_the_frames_and_rate_it_holds(media, tiny_config_path, tmp_path, capsys):
    """A GIF shows at most 50 frames a second: it keeps 1 driving frame in 2. The summary gave the driving video's
    frame count and 60 fps, and "every 2th driving frame"."""
    driving, out = tmp_path / "fast.mp4", tmp_path / "fast.gif"
    write_video(driving, read_frames(media["clip"])[:12], fps=60)
    code, stdout, err = run(["animate", "--config", tiny_config_path, "--random-init", "--source", media["source"],
                             "--driving", driving, "--out", out, "--quiet"], capsys)
    assert code == 0, err
    kept = (probe_video(driving).num_frames + 1) // 2
    assert f"{out}: {kept} frames 64×64 at 30 fps, audio none" in stdout
    assert "a GIF shows at most 50 frames a second: 1 driving frame in 2 kept" in stdout


@pytest.mark.parametrize("source", ["rgba", "grey16"])
def test_animate_side_by_side_with_keypoints_any_source_type(source, media, tiny_config_path, tmp_path, capsys):
    out = tmp_path / "view.mkv"
    code, _, err = run(["animate", "--config", tiny_config_path, "--random-init", "--source", media[source],
                        "--driving", media["clip"], "--out", out, "--quiet", "--layout", "side-by-side",
                        "--draw-keypoints", "--output-size", "96", "--crop", "pad", "--absolute",
                        "--no-adapt-scale"], capsys)
    assert code == 0, err
    info = probe_video(out)
    assert (info.width, info.height, info.num_frames) == (3 * 96, 96, CLIP_FRAMES)


def test_vox256_architecture_end_to_end_and_initial_keypoints(media, tmp_path):
    """Random-init vox-256: 3 real frames at 256², the source is the clip's first frame."""
    clip = cut_clip(media["clip"], tmp_path / "clip3.mp4", 3)
    source = tmp_path / "first.png"
    Image.fromarray(next(iter_frames(clip))).save(source)
    animator = Animator.from_config("configs/vox-256.yaml", random_init=True, batch_size=3)
    seen = []
    handle = animator.generator.register_forward_pre_hook(
        lambda m, a, kw: seen.append((kw["kp_driving"]["value"].clone(), kw["kp_source"]["value"].clone())),
        with_kwargs=True)
    try:
        result = animate_file(animator, source, clip, tmp_path / "vox.mp4", progress=False)
    finally:
        handle.remove()
    info = probe_video(result.path)
    assert (info.width, info.height, info.num_frames, info.fps) == (256, 256, 3, 25.0)
    assert abs(audio_seconds(Path(result.path)) - 3 / 25) <= 1 / 25
    kp_driving, kp_source = seen[0]
    assert kp_driving.shape == (3, 10, 2)
    assert torch.allclose(kp_driving[0], kp_source[0], atol=1e-6)  # relative: frame 0 moves nothing


BAD_INPUTS = {  # case: (changed arguments, the argument whose file the message names, what it says)
    "missing source": (lambda m, o: {"--source": o / "nowhere.png"}, "--source", "no such file"),
    "missing driving": (lambda m, o: {"--driving": o / "nowhere.mp4"}, "--driving", "no such file"),
    "source not an image": (lambda m, o: {"--source": m["text"]}, "--source", "not a readable image or video"),
    "source cut off": (lambda m, o: {"--source": m["cut_jpeg"]}, "--source", "damaged JPEG image"),
    "driving not a video": (lambda m, o: {"--driving": m["text"]}, "--driving", "not a readable video"),
    "corrupt driving": (lambda m, o: {"--driving": m["corrupt"]}, "--driving", "corrupt video stream"),
    "truncated driving": (lambda m, o: {"--driving": m["truncated"]}, "--driving", "decoded 15 of 169 frames"),
    "truncated index": (lambda m, o: {"--driving": m["truncated_index"]}, "--driving", "not a readable video"),
    "zero frames": (lambda m, o: {"--driving": m["zero"]}, "--driving", "zero-frame video"),
    "source and driving swapped": (lambda m, o: {"--source": m["clip"], "--driving": m["source"]}, "--driving",
                                   "one frame only: the driving input must be a video"),
    "checkpoint misfit": (lambda m, o: {"--checkpoint": m["tiny_ckpt"], "--config": "configs/vox-256.yaml"},
                          "--checkpoint", "'generator' does not fit the model config"),
    "checkpoint corrupt": (lambda m, o: {"--checkpoint": m["bad_ckpt"]}, "--checkpoint", "not a readable checkpoint"),
    "output under a file": (lambda m, o: {"--out": m["text"] / "out.mp4"}, "--out", "is not a folder"),
    "output is a folder": (lambda m, o: {"--out": o}, "--out", "is a folder"),
    "output format": (lambda m, o: {"--out": o / "result.txt"}, "--out", "unsupported output format"),
    # a device or a pipe was 'no such file' (source) or 'empty file (0 bytes)' (driving)
    "source a device": (lambda m, o: {"--source": "/dev/null"}, "--source", "not a regular file (a device or pipe)"),
    "driving a pipe": (lambda m, o: {"--driving": m["fifo"]}, "--driving", "not a regular file (a device or pipe)"),
    "source a folder": (lambda m, o: {"--source": m["fifo"].parent}, "--source", "is a directory, not a file"),
    # an empty source was 'not a readable image or video', an empty driving video 'empty file (0 bytes)'
    "source empty": (lambda m, o: {"--source": m["empty"]}, "--source", "empty file (0 bytes)"),
    # a missing path or a lone .onnx file was 'no ONNX export here (fomm-onnx.json missing)'
    "onnx missing": (lambda m, o: {"--engine": "onnx", "--onnx": o / "nowhere"}, "--onnx", "no such folder"),
    "onnx a file": (lambda m, o: {"--engine": "onnx", "--onnx": m["text"]}, "--onnx", "is a file (expected the folder"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_line_and_no_output(case, media, tiny_config_path, tmp_path, capsys):
    changes, named, problem = BAD_INPUTS[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = {"--config": tiny_config_path, "--random-init": None, "--source": media["source"],
            "--driving": media["clip"], "--out": out_dir / "result.mp4", "--batch-size": "4"}
    args.update(changes(media, out_dir))
    if "--checkpoint" in args:
        del args["--random-init"]
    argv = ["animate", "--quiet"] + [x for k, v in args.items() for x in ((k,) if v is None else (k, v))]
    code, _, err = run(argv, capsys)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2
    assert len(errors) == 1 and errors[0].startswith("fomm animate: error: "), err
    assert f"error: {args[named]}: " in errors[0] or f"error: {named} {args[named]}: " in errors[0], errors[0]
    assert problem in errors[0], errors[0]
    assert list(out_dir.iterdir()) == []  # no output, no temporary


@pytest.mark.parametrize("how", ["same path", "symlink to it", "relative spelling"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(how, media, tiny_config_path, tmp_path, capsys,
                                                                  monkeypatch):
    driving = tmp_path / "talk.mp4"
    driving.write_bytes(media["clip"].read_bytes())
    before = driving.read_bytes()
    out = {"same path": driving, "symlink to it": tmp_path / "link.mp4", "relative spelling": "./x/../talk.mp4"}[how]
    if how == "symlink to it":
        out.symlink_to(driving)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["animate", "--config", tiny_config_path, "--random-init", "--source", media["source"],
                        "--driving", driving, "--out", out, "--quiet"], capsys)
    assert code == 2 and err == f"fomm animate: error: --out {out}: is the input --driving {driving} (an output " \
                                "must not overwrite an input)\n"
    assert driving.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"talk.mp4", Path(str(out)).name})


def test_export_never_overwrites_a_file_it_did_not_write(tiny_config_path, tmp_path, capsys):
    """A folder holding a kp_detector.onnx of the user's (no export manifest beside it) is refused before any export;
    an earlier `fomm export` there (its manifest present) would be replaced."""
    mine = tmp_path / "models" / "kp_detector.onnx"
    mine.parent.mkdir()
    mine.write_bytes(b"the user's own graph")
    code, _, err = run(["export", "--config", tiny_config_path, "--random-init", "--out", mine.parent], capsys)
    assert code == 2 and err == (f"fomm export: error: --out {mine.parent}: holds kp_detector.onnx, not written by "
                                 "`fomm export` (no fomm-onnx.json of an export there); a file is never overwritten: "
                                 "choose another folder\n")
    assert mine.read_bytes() == b"the user's own graph" and [p.name for p in mine.parent.iterdir()] == [mine.name]
    (mine.parent / "fomm-onnx.json").write_text('{"mine": true}')  # a file of that name was taken for an export's
    code, _, err = run(["export", "--config", tiny_config_path, "--random-init", "--out", mine.parent], capsys)
    assert code == 2 and "holds kp_detector.onnx, not written by `fomm export`" in err
    assert mine.read_bytes() == b"the user's own graph" and (mine.parent / "fomm-onnx.json").read_text() == \
        '{"mine": true}'
    mine.unlink()  # the manifest's name alone, the user's too
    code, _, err = run(["export", "--config", tiny_config_path, "--random-init", "--out", mine.parent], capsys)
    assert code == 2 and "holds fomm-onnx.json, not written by `fomm export`" in err


@pytest.mark.parametrize(("command", "flag", "url"), [
    ("animate", "--out", "s3://bucket/result.mp4"), ("animate", "--source", "s3://bucket/face.jpg"),
    ("animate", "--driving", "gs://bucket/talk.mp4"), ("export", "--out", "s3://bucket/onnx")])
def test_a_url_where_a_command_takes_local_files_is_refused(command, flag, url, media, tiny_config_path, tmp_path,
                                                            capsys, monkeypatch):
    """Path() would read 's3://bucket/x' as the local folders 's3:/bucket': the video was written there."""
    monkeypatch.chdir(tmp_path)
    files = {"--source": media["source"], "--driving": media["clip"], "--out": "result.mp4"} if command == "animate" \
        else {"--out": "onnx"}
    files[flag] = url
    code, _, err = run([command, "--config", tiny_config_path, "--random-init",
                        *(x for kv in files.items() for x in kv)], capsys)
    assert code == 2 and err.startswith(f"fomm {command}: error: {flag} {url}: ") and "local" in err, err
    assert list(tmp_path.iterdir()) == []


def test_find_best_frame_without_face_alignment_weights_uses_dlib(media, shared_data, tiny_config_path, tmp_path,
                                                                    capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no face-alignment weights there
    out = tmp_path / "best.mp4"
    code, stdout, err = run(["animate", "--config", tiny_config_path, "--random-init", "--source",
                             shared_data / "face_source_d.jpg", "--driving", media["clip"], "--out", out,
                             "--quiet", "--find-best-frame"], capsys)
    assert code == 0, err
    assert "relative motion from driving frame" in stdout and "best frame by dlib-68 landmarks" in stdout
    assert probe_video(out).num_frames == CLIP_FRAMES


def test_missing_checkpoint_needs_explicit_random_init(media, tiny_config_path, tmp_path, capsys):
    code, _, err = run(["animate", "--config", tiny_config_path, "--source", media["source"], "--driving",
                        media["clip"], "--out", tmp_path / "r.mp4"], capsys)
    assert code == 2 and "--checkpoint is required (or pass --random-init" in err
    code, _, err = run(["animate", "--config", tiny_config_path, "--checkpoint", tiny_config_path, "--random-init",
                        "--source", media["source"], "--driving", media["clip"], "--out", tmp_path / "r.mp4"], capsys)
    assert code == 2 and err == (f"fomm animate: error: --random-init with --checkpoint {tiny_config_path}: choose "
                                 "one (trained weights, or random ones)\n")  # both given: which was meant?
    assert not (tmp_path / "r.mp4").exists()


def test_info_counts_parameters_and_checks_checkpoints(media, tiny_config_path, capsys):
    code, out, _ = run(["info", "--config", "configs/vox-256.yaml"], capsys)
    assert code == 0
    assert "14,215,368" in out and "45,575,391" in out and "2,758,849" in out  # reference figures (vox-256)
    code, out, _ = run(["info", "--config", tiny_config_path, "--checkpoint", media["tiny_ckpt"]], capsys)
    assert code == 0 and "[generator]: ok" in out and "[discriminator]: absent" in out
    code, out, _ = run(["info", "--config", "configs/vox-256.yaml", "--checkpoint", media["tiny_ckpt"]], capsys)
    assert code == 2 and "'kp_detector' does not fit the model config" in out


def test_info_on_a_checkpoint_lacking_a_network_or_with_an_odd_epoch_says_so_in_one_line(media, tiny_config_path,
                                                                                        capsys, tmp_path):
    """A checkpoint without its kp_detector was blamed on its fitting generator; an epoch of NaN (which `animate`
    refuses in one line) was a traceback here."""
    import torch

    state = torch.load(media["tiny_ckpt"], weights_only=True)
    torch.save({"generator": state["generator"]}, tmp_path / "half.pth.tar")
    code, out, err = run(["info", "--config", tiny_config_path, "--checkpoint", tmp_path / "half.pth.tar"], capsys)
    assert (code, err.strip()) == (2, f"fomm info: error: --checkpoint {tmp_path / 'half.pth.tar'}: has no "
                                      "'kp_detector'") and "[generator]: ok" in out
    torch.save({**state, "epoch": float("nan")}, tmp_path / "nan.pth.tar")
    code, _, err = run(["info", "--config", tiny_config_path, "--checkpoint", tmp_path / "nan.pth.tar"], capsys)
    assert (code, err.strip()) == (2, f"fomm info: error: {tmp_path / 'nan.pth.tar'}: its 'epoch' is not a whole "
                                      "number ('nan')")


def test_a_registered_model_version_is_a_checkpoint(media, tiny_config_path, capsys, fresh_sqlite_uri, monkeypatch,
                                                    tmp_path):
    """models:/NAME/VERSION, /latest and @ALIAS (what `train --model-name` registers, in $MLFLOW_TRACKING_URI's
    store) name that version's checkpoint, copied once into ~/.cache/fomm/models, and its config where --config is
    left out; a version the store lacks, a
    malformed URI, a store that is not there or a cache that cannot be written is one line naming the flag.
    evaluate's --checkpoint (its run tagged with the URI; the registered config without --config) and train's
    --init-from (kept as the URI: each worker's machine copies the version for itself) take it too, and so do
    animate_batch's actors (each copies it on its own machine)."""
    import argparse

    from animate.batch import AnimatePairs, registered
    from evaluation.cli import eval_config_from_args, eval_flags
    from services.errors import UserError
    from services.tracking.registry import register_run_files
    from services.tracking.run import Tracker
    from services.tracking.store import make_client
    from training.job import TrainJob, read_init_checkpoint

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_sqlite_uri)
    with Tracker(fresh_sqlite_uri, "t-registered") as t:
        pass
    files = tmp_path / "model"
    files.mkdir()
    shutil.copyfile(media["tiny_ckpt"], files / "checkpoint.pth.tar")
    shutil.copyfile(tiny_config_path, files / "config.yaml")
    register_run_files(fresh_sqlite_uri, "tiny", t.run_id, files)
    make_client(fresh_sqlite_uri).set_registered_model_alias("tiny", "champion", "1")
    for uri in ("models:/tiny/1", "models:/tiny/latest", "models:/tiny@champion"):
        code, out, err = run(["info", "--config", tiny_config_path, "--checkpoint", uri], capsys)
        assert code == 0 and "[generator]: ok" in out, err
    code, out, err = run(["info", "--checkpoint", "models:/tiny/1"], capsys)  # the config registered with it
    assert code == 0 and "[generator]: ok" in out and out.startswith(str(tmp_path / ".cache")), err
    code, _, err = run(["info", "--checkpoint", media["tiny_ckpt"]], capsys)  # a file brings no config
    assert (code, err) == (2, "fomm info: error: --config is required (a models:/ --checkpoint brings the config "
                              "registered with it)\n")
    [cached] = (tmp_path / ".cache" / "fomm" / "models").iterdir()
    assert (cached / "checkpoint.pth.tar").read_bytes() == Path(media["tiny_ckpt"]).read_bytes()
    parser = argparse.ArgumentParser()
    eval_flags(parser, "e")
    cfg = eval_config_from_args(parser.parse_args(["--config", "c", "--checkpoint", "models:/tiny@champion",
                                                   "--data", "d", "--tracking-uri", fresh_sqlite_uri]))
    assert (cfg.checkpoint, cfg.tags) == (str(cached / "checkpoint.pth.tar"), {"checkpoint.model_uri":
                                                                                 "models:/tiny@champion"})
    assert cfg.config_path == "c"  # --config given wins
    unconfigured = parser.parse_args(["--checkpoint", "models:/tiny/1", "--data", "d"])
    assert eval_config_from_args(unconfigured).config_path == str(cached / "config.yaml")
    with pytest.raises(UserError, match=r"^--config is required \(a models:/ --checkpoint brings"):
        eval_config_from_args(parser.parse_args(["--checkpoint", str(media["tiny_ckpt"]), "--data", "d"]))
    job = TrainJob(config=tiny_config_path, data="d", storage="s", init_from="models:/tiny/latest")
    assert job.init_from == "models:/tiny/latest"  # kept: each machine that reads it copies it for itself
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "node2"))  # a worker on a machine without the driver's copy
    state = read_init_checkpoint(job, fresh_sqlite_uri)
    assert (tmp_path / "node2" / "fomm" / "models" / cached.name / "checkpoint.pth.tar").is_file()
    expected = torch.load(media["tiny_ckpt"], map_location="cpu", weights_only=True)["generator"]
    assert all(torch.equal(state["generator"][k], v) for k, v in expected.items())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "node3"))  # an animate_batch actor on another machine
    actor = AnimatePairs({"config": "driver-only.yaml", "checkpoint": "driver-only.pth.tar",
                          "registered": registered("models:/tiny/1", registered_config=True)})
    assert (tmp_path / "node3" / "fomm" / "models" / cached.name / "config.yaml").is_file()
    assert all(torch.equal(actor.animator.generator.state_dict()[k], v) for k, v in expected.items())
    capsys.readouterr()  # MLflow's download bars
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "node4"))  # a first copy under --quiet: no bar
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")  # the product turns it off: undone after
    code, _, err = run(["animate", "--checkpoint", "models:/tiny/1", "--source", media["source"], "--driving",
                        media["clip"], "--out", tmp_path / "quiet.mp4", "--quiet"], capsys)
    assert (code, err) == (0, "") and (tmp_path / "node4" / "fomm" / "models" / cached.name).is_dir()
    monkeypatch.delenv("XDG_CACHE_HOME")
    for uri, problem in (("models:/tiny/2", f"not in the model registry at {fresh_sqlite_uri} (Model Version "
                                            "(name=tiny, version=2) not found)"),
                         ("models:tiny", "expected models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS")):
        code, _, err = run(["info", "--config", tiny_config_path, "--checkpoint", uri], capsys)
        assert (code, err.strip()) == (2, f"fomm info: error: --checkpoint {uri}: {problem}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(files / "config.yaml"))  # a file: no folder can be made under it
    code, _, err = run(["info", "--config", tiny_config_path, "--checkpoint", "models:/tiny/1"], capsys)
    assert code == 2 and err.startswith(f"fomm info: error: --checkpoint models:/tiny/1: cannot copy version 1 into "
                                        f"{files / 'config.yaml'}/fomm/models (") and err.count("\n") == 1
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none.db'}")  # opening it would make one
    code, _, err = run(["animate", "--config", tiny_config_path, "--checkpoint", "models:/tiny/1", "--source",
                        media["source"], "--driving", media["clip"], "--out", tmp_path / "out.mp4"], capsys)
    assert code == 2 and "--checkpoint models:/tiny/1: no MLflow store at sqlite:///" in err
    assert err.rstrip().endswith("registered it in: $MLFLOW_TRACKING_URI)")  # fomm animate has no --tracking-uri
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "out.mp4").exists()
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # a URI without its version: its form first, not "no MLflow store"
    code, _, err = run(["info", "--config", tiny_config_path, "--checkpoint", "models:/tiny"], capsys)
    assert (code, err.strip()) == (2, "fomm info: error: --checkpoint models:/tiny: expected models:/NAME/VERSION, "
                                      "models:/NAME/latest or models:/NAME@ALIAS")


def test_runs_compare_goes_to_the_compare_stage_with_its_arguments(capsys, fresh_sqlite_uri):
    from services.tracking.run import Tracker

    with Tracker(fresh_sqlite_uri, "dispatch", run_name="only") as t:
        t.log_metrics({"l1": 0.125})
    assert main(["runs", "compare", "-e", "dispatch", "--tracking-uri", fresh_sqlite_uri, "--metrics", "l1",
                 "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("only,") and lines[1].endswith(",0.125")  # every digit
    assert main(["runs", "merge"]) == 2 and "unknown action 'merge'" in capsys.readouterr().err


def test_runs_compare_on_a_dead_tracking_server_is_one_line_in_seconds(capsys):
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # released at once: nothing listens there
    started = time.monotonic()
    assert main(["runs", "compare", "--tracking-uri", f"http://127.0.0.1:{port}"]) == 2
    assert time.monotonic() - started < 5
    assert capsys.readouterr().err == (f"fomm runs compare: error: --tracking-uri http://127.0.0.1:{port}: unreachable "
                                       "(Connection refused)\n")


def test_console_script_exit_status(media, tmp_path):
    fomm = Path(sys.executable).parent / "fomm"
    done = subprocess.run([str(fomm), "animate", "--config", "configs/tiny-64.yaml", "--random-init",
                           "--source", str(media["text"]), "--driving", str(media["clip"]),
                           "--out", str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (f"fomm animate: error: {media['text']}: "
                                                    "not a readable image or video")


def test_a_mistyped_flag_and_help_answer_without_importing_torch():
    """torch takes ~2 s to import: `fomm animate --help` and a flag typo answered only after it."""
    code = ("import sys\nfrom animate.cli import main\nfor argv in (['animate', '--help'], ['export', '--help'], "
            "['info', '--help'], ['animate', '--sourc', 'x']):\n    try:\n        main(argv)\n"
            "    except SystemExit:\n        pass\nsys.exit('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, "torch was imported"
    assert "usage: fomm animate" in done.stdout and "usage: fomm info" in done.stdout
    assert done.stderr.strip() == "fomm animate: error: unrecognized argument --sourc (did you mean --source?)"


def test_a_source_this_user_may_not_read_says_so(shared_data):
    """A source without read permission was "not a readable image or video": the video decoder's try hid why."""
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        source = folder / "face.jpg"
        shutil.copy(shared_data / "face_source_a.jpg", source)
        source.chmod(0)
        assert error_as_a_plain_user(lambda: read_source(source)) == (
            f"{source}: not a readable image ([Errno 13] Permission denied: '{source}')")
        source.chmod(0o644)
        assert error_as_a_plain_user(lambda: read_source(source)) == ""
    finally:
        shutil.rmtree(folder)


def test_best_frame_starts_relative_motion_there(media, tiny_config_path, tmp_path):
    """A landmark function that sees the source's pose only in driving frame 5: motion is zero there."""
    square = np.array([[0, 0], [4, 0], [4, 4], [0, 4], [2, 1]], dtype=float)
    calls = []

    def landmarks(frame):  # call 0: the source, then the driving frames in order
        calls.append(frame.shape)
        index = len(calls) - 2
        if index == 5 or index < 0:
            return square * (1 + index % 3)
        return None if index % 2 else square + [[0, 0], [0, 0], [3, 0], [3, 0], [0, 0]]

    animator = Animator.from_config(tiny_config_path, random_init=True, batch_size=3)
    seen = []
    handle = animator.generator.register_forward_pre_hook(
        lambda m, a, kw: seen.append((kw["kp_driving"]["value"].clone(), kw["kp_source"]["value"].clone())),
        with_kwargs=True)
    try:
        result = animate_file(animator, media["source"], media["clip"], tmp_path / "best.mp4", progress=False,
                              use_best_frame=True, landmarks=landmarks)
    finally:
        handle.remove()
    assert result.best_frame == 5 and result.num_frames == CLIP_FRAMES
    assert calls == [(64, 64, 3)] * (1 + CLIP_FRAMES)  # landmarks on what the model sees
    kp_driving, kp_source = torch.cat([s[0] for s in seen]), torch.cat([s[1] for s in seen])
    assert torch.allclose(kp_driving[5], kp_source[5], atol=1e-5)
    assert not torch.allclose(kp_driving[0], kp_source[0], atol=1e-3)


def test_an_existing_output_is_never_overwritten(media, tiny_config_path, tmp_path, capsys):
    mine = tmp_path / "mine.mp4"
    mine.write_bytes(b"the user's own video")
    code, _, err = run(["animate", "--config", tiny_config_path, "--random-init", "--source", media["source"],
                        "--driving", media["clip"], "--out", mine, "--quiet"], capsys)
    assert code == 2 and err == f"fomm animate: error: --out {mine}: exists (a file is never overwritten: remove it " \
                                "or choose a new name)\n"
    assert mine.read_bytes() == b"the user's own video" and [p.name for p in tmp_path.iterdir()] == ["mine.mp4"]


def test_a_model_too_large_for_memory_is_one_line_and_no_output(media, tiny_config_path, tmp_path, capsys):
    """A 400000×400000 frame_shape (a typo'd size): its first tensor, 1.8 TiB, cannot be allocated. Before: PyTorch's
    allocator error under a 40-line traceback."""
    huge = tmp_path / "huge.yaml"
    huge.write_text(tiny_config_path.read_text().replace("frame_shape: [64, 64, 3]", "frame_shape: [400000, 400000, 3]"))
    out = tmp_path / "out"
    code, _, err = run(["animate", "--config", huge, "--random-init", "--source", media["source"], "--driving",
                        media["clip"], "--out", out / "result.mp4", "--quiet"], capsys)
    assert code == 2 and err.splitlines()[-1] == ("fomm animate: error: out of memory: could not allocate 1,788.1 GiB "
                                                  "(a smaller batch, frame size or model needs less)"), err
    assert not out.exists()


@pytest.mark.parametrize(("argv", "line"), [
    ([], "fomm: error: a command is required (animate, export, info, runs compare)"),
    (["animte"], "fomm: error: unknown command 'animte' (expected one of: animate, export, info, runs compare)"),
    (["runs"], "fomm runs: error: an action is required: fomm runs compare [ARGS...]"),
    (["info", "--config", "configs/tiny-64.yaml", "--jsn"],
     "fomm info: error: unrecognized argument --jsn (did you mean --json?)"),
    (["export", "--config", "configs/tiny-64.yaml", "--random", "--out", "x"],  # no abbreviations
     "fomm export: error: unrecognized argument --random (did you mean --random-init?)"),
    # the original FOMM's demo.py command as its users type it: every name at once, ours for each (difflib alone
    # offered --relative for --result_video and --crop for --cpu)
    (["animate", "--config", "configs/tiny-64.yaml", "--checkpoint", "vox.pth.tar", "--source_image", "a.jpg",
      "--driving_video", "b.mp4", "--result_video", "c.mp4", "--relative", "--adapt_scale", "--cpu"],
     "fomm animate: error: unrecognized arguments --source_image (did you mean --source?), --driving_video (did you "
     "mean --driving?), --result_video (did you mean --out?), --adapt_scale (did you mean --adapt-scale?), --cpu (did "
     "you mean --device cpu?)"),
])
def test_command_line_mistakes_are_one_line_and_status_2(argv, line, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err == line + "\n"


def test_a_batch_larger_than_the_free_memory_holds_is_cut_to_what_fits(repo_root, capsys):
    """`--batch-size 128` under vox-512 wanted 29 GB on a 24 GB machine: the OOM killer ended the run after three
    minutes, no line, no output. On a CPU the batch is cut to what the memory free now holds (a note says so); one
    that fits is kept. Batches do not change the result (test_batch_size_does_not_change_the_result)."""
    from animate.files import build_animator
    from services.checks import free_memory

    free = free_memory()
    assert free is not None and 0 < free < 1 << 50  # this machine's MemAvailable (a cgroup's limit within)
    animator, _ = build_animator(repo_root / "configs" / "vox-512.yaml", random_init=True, crop="none",
                                 batch_size=4096)  # 4096 frames of 512²: about 1.6 TB
    assert 1 <= animator.batch_size < 4096
    assert capsys.readouterr().out.startswith(f"note: --batch-size 4096: batches of {animator.batch_size} frames, "
                                              "what this machine's free memory (")
    animator, _ = build_animator(repo_root / "configs" / "vox-512.yaml", random_init=True, crop="none", batch_size=1)
    assert animator.batch_size == 1 and capsys.readouterr().out == ""


def test_frames_wider_than_h264_takes_are_refused_before_the_work(media, tiny_config_path, tmp_path, capsys):
    """`--output-size 8192 --layout side-by-side` makes frames of three 8192-wide panels: libx264 refused to open
    (a traceback) once every frame was made, after a minute and 21 GB. The flags are refused first, and the
    writer refuses such a frame in one line (services.video_write.MAX_SIDE)."""
    from services.video_read import VideoError
    from services.video_write import VideoWriter

    out = tmp_path / "wide.mp4"
    assert main(["animate", "--config", str(tiny_config_path), "--random-init", "--source", str(media["source"]),
                 "--driving", str(media["clip"]), "--out", str(out), "--output-size", "8192",
                 "--layout", "side-by-side"]) == 2
    assert capsys.readouterr().err == ("fomm animate: error: --output-size 8192x8192 with --layout side-by-side: "
                                       "three panels make frames 24,576 wide, above H.264 level 6.2's 8,192 (a "
                                       "panel at most 2730 wide)\n")
    with pytest.raises(VideoError, match=r"a 16386×64 frame, larger than H.264 encodes \(16,384 a side"):
        with VideoWriter(out, 25) as writer:
            writer.write(np.zeros((64, 16386, 3), np.uint8))
    assert not out.exists() and list(tmp_path.iterdir()) == []
