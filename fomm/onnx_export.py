"""ONNX export (opset 18, the `export` extra; run by animate.onnx_engine) as three graphs: the kp detector, the
source's share of the generator (once) and the generator step; relative motion stays in torch between them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from fomm.blocks import fold_batch_norm
from fomm.dense_motion import MotionSource
from fomm.generator import GeneratorSource, OcclusionAwareGenerator
from fomm.geometry import Keypoints, expand_kp
from fomm.keypoint_detector import KPDetector

OPSET = 18
FILES = ("kp_detector.onnx", "source.onnx", "generator_step.onnx")
MANIFEST = "fomm-onnx.json"


def weights_digest(*modules: nn.Module) -> str:
    """SHA-256 of the modules' state, names and values (floats as float32): the weights a graph was made from."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            value = tensor.detach().to("cpu", torch.float32 if tensor.is_floating_point() else tensor.dtype)
            digest.update(name.encode() + value.contiguous().numpy().tobytes())
    return digest.hexdigest()


def as_keypoints(value: Tensor, jacobian: Tensor | None) -> Keypoints:
    return {"value": value} if jacobian is None else {"value": value, "jacobian": jacobian}


class _Graph(nn.Module):
    """One exported graph: `net`'s forward as plain tensors in and out."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net


class _Detect(_Graph):
    def forward(self, image: Tensor) -> tuple[Tensor, ...]:  # B×3×H×W → value B×K×2 (, jacobian B×K×2×2)
        return tuple(self.net(image).values())


class _Source(_Graph):
    def forward(self, image: Tensor, value: Tensor, jacobian: Tensor | None = None) -> tuple[Tensor, ...]:
        prepared = self.net.prepare_source(image, as_keypoints(value, jacobian))
        return prepared.features, prepared.motion.image, prepared.motion.heatmap


class _Step(_Graph):
    def forward(self, features: Tensor, motion_image: Tensor, heatmap: Tensor, driving_value: Tensor,
                source_value: Tensor, driving_jacobian: Tensor | None = None,
                source_jacobian: Tensor | None = None) -> Tensor:
        b = driving_value.shape[0]
        source = GeneratorSource(image=motion_image, features=features,
                                 motion=MotionSource(image=motion_image, heatmap=heatmap))
        return self.net(None, kp_driving=as_keypoints(driving_value, driving_jacobian),
                        kp_source=expand_kp(as_keypoints(source_value, source_jacobian), b), source=source,
                        outputs="prediction")["prediction"]


@contextlib.contextmanager
def _exporter_quiet() -> Iterator[None]:
    """torch's exporter warns, for every graph, of what does not concern these (torchvision ops it skips, a
    deprecation inside its own pytree code, the batch dimension's name): 17 console lines of each export."""
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    registry.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
            warnings.filterwarnings("ignore", r"# The axis name: \w+ will not be used", UserWarning)
            yield
    finally:
        registry.setLevel(level)


def export_onnx(kp_detector: KPDetector, generator: OcclusionAwareGenerator,
                frame_size: tuple[int, int]) -> dict[str, bytes]:
    """The three graphs (batch dimension dynamic) and their manifest, as file name → bytes (FILES, MANIFEST);
    the modules' batch norms are folded into their convs in place, as the Animator does."""
    if generator.dense_motion_network is None:
        raise ValueError("ONNX export needs a generator with a dense motion network")
    kp_detector, generator = fold_batch_norm(kp_detector.eval()), fold_batch_norm(generator.eval())
    h, w = frame_size
    image, frames = torch.rand(1, 3, h, w), torch.rand(2, 3, h, w)
    with torch.no_grad():
        kp_s, kp_d = kp_detector(image), kp_detector(frames)
        prepared = generator.prepare_source(image, kp_s)
    jac = "jacobian" in kp_s
    batch = torch.export.Dim("batch", min=1, max=1024)
    step_inputs = ["features", "motion_image", "heatmap", "driving_value", "source_value", "driving_jacobian",
                   "source_jacobian"][: 5 + 2 * jac]
    graphs = [
        (FILES[0], _Detect(kp_detector), (frames,), ["image"], ["value", "jacobian"][: 1 + jac],
         {"image": {0: batch}}),
        (FILES[1], _Source(generator), (image, *kp_s.values()), ["image", "value", "jacobian"][: 2 + jac],
         ["features", "motion_image", "heatmap"], None),
        (FILES[2], _Step(generator),
         (prepared.features, prepared.motion.image, prepared.motion.heatmap, kp_d["value"], kp_s["value"],
          *((kp_d["jacobian"], kp_s["jacobian"]) if jac else ())),
         step_inputs, ["prediction"], {n: ({0: batch} if n.startswith("driving") else None) for n in step_inputs}),
    ]
    out = {}
    for name, module, args, inputs, outputs, shapes in graphs:
        with _exporter_quiet():
            program = torch.onnx.export(module.eval(), args, input_names=inputs, output_names=outputs,
                                        opset_version=OPSET, dynamic_shapes=shapes, dynamo=True, verbose=False)
        out[name] = program.model_proto.SerializeToString()  # weights inside: one self-contained file each
    manifest = {"frame_size": [h, w], "jacobian": jac, "opset": OPSET, "files": list(FILES),
                "weights_sha256": weights_digest(kp_detector, generator),
                "files_sha256": {name: hashlib.sha256(data).hexdigest() for name, data in out.items()}}
    return {**out, MANIFEST: json.dumps(manifest, indent=1).encode()}
