"""ONNX export of the animation model, and the same model run on ONNX Runtime behind the Animator's interface.

Three graphs (opset 18, GridSample): `kp_detector.onnx` (frames → keypoints), `source.onnx` (the source and its
keypoints → everything the generator needs of the source once) and `generator_step.onnx` (that, the driving
and source keypoints → the predicted frames). Relative motion stays in torch between them (a few small ops).
The `export` extra brings onnx, onnxscript and onnxruntime; they are imported only here, inside functions.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from fomm.animator import Animator, AnimatorError
from fomm.dense_motion import MotionSource
from fomm.generator import GeneratorSource, OcclusionAwareGenerator
from fomm.geometry import Keypoints
from fomm.inference import fold_batch_norm
from fomm.keypoint_detector import KPDetector

OPSET = 18
FILES = ("kp_detector.onnx", "source.onnx", "generator_step.onnx")
MANIFEST = "fomm-onnx.json"


def _kp(value: Tensor, jacobian: Tensor | None) -> Keypoints:
    return {"value": value} if jacobian is None else {"value": value, "jacobian": jacobian}


class _Detect(nn.Module):
    def __init__(self, kp_detector: KPDetector) -> None:
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:  # B×3×H×W → value B×K×2 (, jacobian B×K×2×2)
        return tuple(self.kp_detector(image).values())


class _Source(nn.Module):
    def __init__(self, generator: OcclusionAwareGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, image: Tensor, value: Tensor, jacobian: Tensor | None = None) -> tuple[Tensor, ...]:
        prepared = self.generator.prepare_source(image, _kp(value, jacobian))
        return prepared.features, prepared.motion.image, prepared.motion.heatmap


class _Step(nn.Module):
    def __init__(self, generator: OcclusionAwareGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, features: Tensor, motion_image: Tensor, heatmap: Tensor, driving_value: Tensor,
                source_value: Tensor, driving_jacobian: Tensor | None = None,
                source_jacobian: Tensor | None = None) -> Tensor:
        b = driving_value.shape[0]
        source = GeneratorSource(image=motion_image, features=features,
                                 motion=MotionSource(image=motion_image, heatmap=heatmap))
        kp_source = {k: v.expand(b, *v.shape[1:]) for k, v in _kp(source_value, source_jacobian).items()}
        return self.generator(None, kp_driving=_kp(driving_value, driving_jacobian), kp_source=kp_source,
                              source=source, outputs="prediction")["prediction"]


def export_onnx(kp_detector: KPDetector, generator: OcclusionAwareGenerator, frame_size: tuple[int, int],
                out_dir: str | Path) -> Path:
    """Write the three graphs (batch dimension dynamic) and a manifest to `out_dir`; returns it.

    The modules are folded (batch norm into convs) in place, as the Animator does. Written under temporary names
    and renamed, so a failed export leaves no partial graph behind.
    """
    if generator.dense_motion_network is None:
        raise ValueError("ONNX export needs a generator with a dense motion network")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kp_detector, generator = fold_batch_norm(kp_detector.eval()), fold_batch_norm(generator.eval())
    h, w = frame_size
    image, frames = torch.rand(1, 3, h, w), torch.rand(2, 3, h, w)
    with torch.no_grad():
        kp_s, kp_d = kp_detector(image), kp_detector(frames)
        prepared = generator.prepare_source(image, kp_s)
    jac = "jacobian" in kp_s
    batch = torch.export.Dim("batch", min=1, max=1024)
    graphs = [
        (FILES[0], _Detect(kp_detector), (frames,), ["image"], ["value", "jacobian"][: 1 + jac],
         {"image": {0: batch}}),
        (FILES[1], _Source(generator), (image, *kp_s.values()), ["image", "value", "jacobian"][: 2 + jac],
         ["features", "motion_image", "heatmap"], None),
        (FILES[2], _Step(generator),
         (prepared.features, prepared.motion.image, prepared.motion.heatmap, kp_d["value"], kp_s["value"],
          *((kp_d["jacobian"], kp_s["jacobian"]) if jac else ())),
         ["features", "motion_image", "heatmap", "driving_value", "source_value", "driving_jacobian",
          "source_jacobian"][: 5 + 2 * jac], ["prediction"], None),
    ]
    for name, module, args, inputs, outputs, shapes in graphs:
        if name == FILES[2]:
            shapes = {n: ({0: batch} if n.startswith("driving") else None) for n in inputs}
        tmp = out / f".{name}.tmp"
        torch.onnx.export(module.eval(), args, str(tmp), input_names=inputs, output_names=outputs, opset_version=OPSET,
                          dynamic_shapes=shapes, dynamo=True, external_data=False, verbose=False)
        tmp.replace(out / name)
    manifest = {"frame_size": [h, w], "jacobian": jac, "opset": OPSET, "files": list(FILES)}
    (out / f".{MANIFEST}.tmp").write_text(json.dumps(manifest, indent=1))
    (out / f".{MANIFEST}.tmp").replace(out / MANIFEST)
    return out


class _Session:
    """An ONNX Runtime session called with torch tensors, returning torch tensors."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, *args: Tensor) -> list[Tensor]:
        feed = {name: a.detach().float().contiguous().cpu().numpy() for name, a in zip(self.inputs, args)}
        return [torch.from_numpy(o) for o in self.session.run(None, feed)]


class OnnxKPDetector:
    """kp_detector.onnx behind the KPDetector call."""

    def __init__(self, path: Path, jacobian: bool) -> None:
        self.session, self.jacobian = _Session(path), jacobian

    def __call__(self, image: Tensor) -> Keypoints:
        return _kp(*self.session(image)) if self.jacobian else _kp(self.session(image)[0], None)


class OnnxGenerator:
    """source.onnx and generator_step.onnx behind the generator's prepare_source and inference call."""

    def __init__(self, source_path: Path, step_path: Path) -> None:
        self.source, self.step = _Session(source_path), _Session(step_path)

    def prepare_source(self, image: Tensor, kp_source: Keypoints) -> GeneratorSource:
        features, motion_image, heatmap = self.source(image, *kp_source.values())
        return GeneratorSource(image=image, features=features,
                               motion=MotionSource(image=motion_image, heatmap=heatmap))

    def __call__(self, source_image: Tensor | None, kp_driving: Keypoints, kp_source: Keypoints,
                 source: GeneratorSource, outputs: str = "prediction") -> dict[str, Tensor]:
        args = [source.features, source.motion.image, source.motion.heatmap, kp_driving["value"],
                kp_source["value"][:1]]
        if "jacobian" in kp_driving:
            args += [kp_driving["jacobian"], kp_source["jacobian"][:1]]
        return {"prediction": self.step(*args)[0]}


def load_onnx(out_dir: str | Path) -> tuple[OnnxKPDetector, OnnxGenerator, tuple[int, int]]:
    """The exported graphs of `out_dir` on ONNX Runtime (CPU), and the frame size they were made for."""
    root = Path(out_dir)
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{root}: no ONNX export here ({MANIFEST} missing; run `fomm export`)")
    manifest = json.loads(path.read_text())
    missing = [f for f in FILES if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: {missing[0]} missing from the ONNX export")
    return (OnnxKPDetector(root / FILES[0], manifest["jacobian"]), OnnxGenerator(root / FILES[1], root / FILES[2]),
            tuple(manifest["frame_size"]))


def onnx_animator(animator: Animator, onnx_dir: str | Path | None = None) -> Animator:
    """The same animation options on ONNX Runtime: the graphs of `onnx_dir`, or the animator's model exported."""
    with tempfile.TemporaryDirectory(prefix="fomm-onnx-") as tmp:
        if onnx_dir is None:
            export_onnx(animator.kp_detector, animator.generator, animator.frame_size, tmp)
        kp_detector, generator, size = load_onnx(onnx_dir or tmp)  # the sessions hold the graphs in memory
    if tuple(size) != animator.frame_size:
        raise AnimatorError(f"{onnx_dir}: exported for {size[0]}×{size[1]} frames, the config says "
                            f"{animator.frame_size[0]}×{animator.frame_size[1]}")
    return Animator(kp_detector, generator, frame_size=animator.frame_size, relative=animator.relative,
                    adapt_movement_scale=animator.adapt_movement_scale,
                    use_relative_jacobian=animator.use_relative_jacobian, crop=animator.crop,
                    batch_size=animator.batch_size, smooth=animator.smooth, precision="fp32", channels_last=False)
