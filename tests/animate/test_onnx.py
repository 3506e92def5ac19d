"""ONNX export (the `export` extra): graphs on ONNX Runtime within 1e-4 of PyTorch fp32 on the same inputs, and the
original FOMM's relative-motion prediction through `--engine onnx`; `fomm export` + `fomm animate --engine onnx`."""

import subprocess
import sys

import pytest
import torch

pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")
pytest.importorskip("onnxscript", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")


from animate.cli import main  # noqa: E402
from animate.onnx_engine import onnx_animator, save_export  # noqa: E402
from fomm.animator import Animator
from fomm.onnx_export import FILES, export_onnx  # noqa: E402
from services.video_read import probe_video, read_frames  # noqa: E402
from services.video_write import write_video  # noqa: E402
from tests.fomm.test_parity_original import PARITY_FP32, build, max_diff  # noqa: E402


@pytest.fixture(scope="module")
def ref() -> dict:
    return torch.load(PARITY_FP32, weights_only=True)


@pytest.fixture(scope="module")
def exported(ref, tmp_path_factory):
    det, gen, _ = build(ref)
    return save_export(export_onnx(det, gen, (64, 64)), tmp_path_factory.mktemp("onnx") / "export")


def test_onnx_graphs_match_pytorch_fp32(ref, exported):
    assert sorted(p.name for p in exported.iterdir()) == sorted([*FILES, "fomm-onnx.json"])  # no temporaries
    det, gen, _ = build(ref)  # unfolded, as trained
    engine = onnx_animator(Animator(*build(ref)[:2], frame_size=(64, 64), precision="fp32"), exported)  # its size
    kp_det, onnx_gen = engine.kp_detector, engine.generator
    with torch.no_grad():
        kp_s, kp_d = det(ref["source"]), det(ref["driving"])
        onnx_kp_d = kp_det(ref["driving"])  # batch 4: the exported batch dimension is dynamic
        for key in ("value", "jacobian"):
            assert max_diff(onnx_kp_d[key], kp_d[key]) <= 1e-4
        kp_s4 = {k: v.expand(4, *v.shape[1:]) for k, v in kp_s.items()}
        expected = gen(ref["source"].expand(4, -1, -1, -1), kp_driving=kp_d, kp_source=kp_s4)["prediction"]
        prepared = onnx_gen.prepare_source(ref["source"], kp_s)
        got = onnx_gen(None, kp_driving=kp_d, kp_source=kp_s4, source=prepared)["prediction"]
    assert got.shape == expected.shape and max_diff(got, expected) <= 1e-4


def test_onnx_engine_animates_like_the_original(ref, exported):
    det, gen, _ = build(ref)
    animator = Animator(det, gen, frame_size=(64, 64), crop="none", batch_size=3, precision="fp32")
    engine = onnx_animator(animator, exported)
    assert not isinstance(engine.generator, torch.nn.Module)
    predictions = torch.cat([b.prediction for b in engine.animate(ref["source"], list(ref["driving"]))])
    assert max_diff(predictions, ref["relative"]["prediction"]) <= 1e-4  # numbers of the original FOMM code


def test_export_command_and_onnx_engine_on_real_media(shared_data, tiny_config_path, tmp_path, capsys):
    out = tmp_path / "graphs"
    done = subprocess.run([sys.executable, "-m", "animate.cli", "export", "--config", str(tiny_config_path),
                           "--random-init", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and f"{out}: kp_detector.onnx" in done.stdout, done.stderr
    assert done.stderr == ""  # none of torch's exporter warnings (17 lines of each export)
    clip = write_video(tmp_path / "clip.mp4", read_frames(shared_data / "face_talk_a.mp4", 5), 25.0)
    common = ["animate", "--config", str(tiny_config_path), "--random-init", "--source",
              str(shared_data / "face_source_d.jpg"), "--driving", str(clip), "--quiet"]
    assert main([*common, "--out", str(tmp_path / "onnx.mp4"), "--engine", "onnx", "--onnx", str(out)]) == 0
    assert probe_video(tmp_path / "onnx.mp4").num_frames == 5
    assert main([*common, "--out", str(tmp_path / "bad.mp4"), "--onnx", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith("--onnx needs --engine onnx")
    (tmp_path / "empty").mkdir()
    assert main([*common, "--out", str(tmp_path / "bad.mp4"), "--engine", "onnx", "--onnx", str(tmp_path / "empty")]) \
        == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # one line, before a model is built
    assert last.startswith("fomm animate: error: ") and "no ONNX export here" in last
    assert not (tmp_path / "bad.mp4").exists()
    assert main([*common, "--out", str(out / "bad.mp4"), "--engine", "onnx", "--onnx", str(out)]) == 2
    assert "is inside the input --onnx" in capsys.readouterr().err  # an output goes outside the inputs
    # graphs of other weights (here another seed's random init; in use, another checkpoint's): refused, as
    # animating with them would show another model's output
    assert main([*common, "--seed", "1", "--out", str(tmp_path / "bad.mp4"), "--engine", "onnx", "--onnx",
                 str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"fomm animate: error: --onnx {out}: exported from other weights than this model's (--checkpoint, or "
        "--random-init with its --seed): export it again with `fomm export`, or leave out --onnx")
    assert not (tmp_path / "bad.mp4").exists()


def test_an_export_whose_graph_changed_since_is_one_line_naming_the_file(ref, exported, tmp_path):
    """A graph file cut short, emptied, or swapped for another of the export was ONNX Runtime's traceback (a swap
    when the first frames ran); each is named against the digests the manifest records. An older export without
    them is still read, and a file there that ONNX Runtime cannot load is named too."""
    import json
    import shutil

    from animate.onnx_engine import ExportMissing

    animator = Animator(*build(ref)[:2], frame_size=(64, 64), precision="fp32")
    for name, damage in (("source.onnx", lambda f: f.write_bytes(f.read_bytes()[:1000])),
                         ("kp_detector.onnx", lambda f: f.write_bytes((exported / "source.onnx").read_bytes()))):
        copy = shutil.copytree(exported, tmp_path / name)
        damage(copy / name)
        with pytest.raises(ExportMissing, match=rf"^--onnx {copy}: {name} is not the graph this export wrote"):
            onnx_animator(animator, copy)
        manifest = json.loads((copy / "fomm-onnx.json").read_text())
        del manifest["files_sha256"]  # as an export made before the digests were recorded
        (copy / "fomm-onnx.json").write_text(json.dumps(manifest))
        if name == "source.onnx":
            with pytest.raises(ExportMissing, match=rf"^--onnx {copy}: {name} is not a readable ONNX graph"):
                onnx_animator(animator, copy)
