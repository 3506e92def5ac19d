"""The exported ONNX graphs (fomm.onnx_export) on ONNX Runtime (the `export` extra), behind the Animator's interface:
`fomm animate --engine onnx`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor

from fomm.animator import Animator, AnimatorError
from fomm.dense_motion import MotionSource
from fomm.generator import GeneratorSource
from fomm.geometry import Keypoints
from fomm.onnx_export import FILES, MANIFEST, export_onnx, weights_digest
from services.atomic import atomic_dir
from services.errors import UserError
from services.failures import one_line


class _Session:
    """An ONNX Runtime session called with torch tensors, returning them by output name: kp_detector.onnx's (value,
    jacobian) are the KPDetector call's keypoints."""

    def __init__(self, graph: Path | bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own kinds (InvalidProtobuf, Fail, …): a damaged file
            if isinstance(graph, bytes):  # an export made here a moment ago: not the user's to mend
                raise
            raise ExportMissing(f"--onnx {graph.parent}: {graph.name} is not a readable ONNX graph (damaged? run "
                                f"`fomm export` again): {one_line(err)}") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, *args: Tensor) -> dict[str, Tensor]:
        feed = {name: a.detach().float().contiguous().cpu().numpy() for name, a in zip(self.inputs, args)}
        return {name: torch.from_numpy(o) for name, o in zip(self.outputs, self.session.run(None, feed))}


class OnnxGenerator:
    """source.onnx and generator_step.onnx behind the generator's prepare_source and inference call."""

    def __init__(self, source_graph: Path | bytes, step_graph: Path | bytes) -> None:
        self.source, self.step = _Session(source_graph), _Session(step_graph)

    def prepare_source(self, image: Tensor, kp_source: Keypoints) -> GeneratorSource:
        out = self.source(image, *kp_source.values())
        return GeneratorSource(image=image, features=out["features"],
                               motion=MotionSource(image=out["motion_image"], heatmap=out["heatmap"]))

    def __call__(self, source_image: Tensor | None, kp_driving: Keypoints, kp_source: Keypoints,
                 source: GeneratorSource, outputs: str = "prediction") -> dict[str, Tensor]:
        args = [source.features, source.motion.image, source.motion.heatmap, kp_driving["value"],
                kp_source["value"][:1]]
        if "jacobian" in kp_driving:
            args += [kp_driving["jacobian"], kp_source["jacobian"][:1]]
        return self.step(*args)  # {"prediction": B×3×H×W}


class ExportMissing(UserError, FileNotFoundError):
    """A folder that is not a whole `fomm export`."""


def export_manifest(out_dir: str | Path) -> dict | None:
    """The manifest `fomm export` wrote in the folder; None where there is none, or the file is not one."""
    try:
        manifest = json.loads((Path(out_dir) / MANIFEST).read_text())
    except (ValueError, OSError):
        return None
    return manifest if isinstance(manifest, dict) and {"jacobian", "frame_size"} <= set(manifest) else None


def check_export(out_dir: str | Path) -> dict:
    """The manifest of a whole `fomm export` folder; else an ExportMissing naming --onnx and the folder."""
    root = Path(out_dir)
    path = root / MANIFEST
    if not root.is_dir():  # it said "no ONNX export here (fomm-onnx.json missing)" of a missing path or a file
        raise ExportMissing(f"--onnx {root}: " + ("is a file (expected the folder `fomm export` wrote)" if
                                                  root.exists() else "no such folder"))
    if not path.is_file():
        raise ExportMissing(f"--onnx {root}: no ONNX export here ({MANIFEST} missing; run `fomm export`)")
    if missing := [f for f in FILES if not (root / f).is_file()]:
        raise ExportMissing(f"--onnx {root}: {missing[0]} missing from the ONNX export")
    if (manifest := export_manifest(root)) is None:
        raise ExportMissing(f"--onnx {root}: {MANIFEST} is not a manifest of `fomm export`")
    for name, digest in (manifest.get("files_sha256") or {}).items():  # exports before it was recorded: not checked
        if name in FILES and hashlib.sha256((root / name).read_bytes()).hexdigest() != digest:
            raise ExportMissing(f"--onnx {root}: {name} is not the graph this export wrote (changed or damaged "
                                "since: run `fomm export` again)")
    return manifest


def save_export(graphs: dict[str, bytes], out_dir: str | Path) -> Path:
    """`export_onnx`'s files in `out_dir`, all of them or (on an error) none."""
    with atomic_dir(out_dir) as tmp:
        for name, data in graphs.items():
            (tmp / name).write_bytes(data)
    return Path(out_dir)


def onnx_animator(animator: Animator, onnx_dir: str | Path | None = None) -> Animator:
    """The same animation options on ONNX Runtime (CPU): the graphs of `onnx_dir`, or the animator's model exported
    (in memory: nothing is written)."""
    if onnx_dir is None:
        graphs = export_onnx(animator.kp_detector, animator.generator, animator.frame_size)
        manifest = json.loads(graphs[MANIFEST])
    else:
        manifest = check_export(onnx_dir)
        graphs = {name: Path(onnx_dir) / name for name in FILES}
    exported = manifest.get("weights_sha256")  # an export of another checkpoint would animate with its weights
    if onnx_dir is not None and exported and exported != weights_digest(animator.kp_detector, animator.generator):
        raise AnimatorError(f"--onnx {onnx_dir}: exported from other weights than this model's (--checkpoint, or "
                            "--random-init with its --seed): export it again with `fomm export`, or leave out --onnx")
    size = tuple(manifest["frame_size"])
    if size != animator.frame_size:
        raise AnimatorError(f"{onnx_dir}: exported for {size[0]}×{size[1]} frames, the config says "
                            f"{animator.frame_size[0]}×{animator.frame_size[1]}")
    same = ("frame_size", "relative", "adapt_movement_scale", "use_relative_jacobian", "crop", "batch_size", "smooth",
            "visualizer")
    return Animator(_Session(graphs[FILES[0]]), OnnxGenerator(graphs[FILES[1]], graphs[FILES[2]]),
                    precision="fp32", channels_last=False, **{name: getattr(animator, name) for name in same})
