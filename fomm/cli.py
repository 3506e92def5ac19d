"""`fomm` command line: `animate` (image + driving video → video), `info` (model sizes, checkpoint fit), `runs`.

A thin wrapper of `fomm.Animator`; the only fomm module that touches video files (through
`preprocessing.video_io`, imported lazily, like `preprocessing.landmarks` and `evaluation.compare`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fomm.animation import find_best_frame
from fomm.animator import CROP_MODES, LAYOUTS, Animator, to_uint8
from fomm.checkpoint import CheckpointError, load_state, read_checkpoint
from fomm.config import load_config
from fomm.precision import PRECISIONS

OUTPUT_SUFFIXES = (".mp4", ".mov", ".mkv")
Landmarker = Callable[[np.ndarray], "np.ndarray | None"]  # H×W×3 uint8 frame → N×2 face landmarks, or None
RANDOM_INIT_WARNING = ("WARNING: --random-init: the model has RANDOM weights (no checkpoint); the output shows "
                       "the pipeline working, not a trained animation")


class AnimateError(ValueError):
    """An input or output of `fomm animate` that cannot be used; the message names the file."""


@dataclass
class AnimateResult:
    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    has_audio: bool
    best_frame: int | None
    seconds: float
    notes: tuple[str, ...] = ()  # which detector / landmark backend was used

    @property
    def frames_per_second(self) -> float:
        return self.num_frames / self.seconds if self.seconds > 0 else float("inf")


def check_output(out: str | Path) -> Path:
    """Fail early, naming the file, when the output cannot be written (the video itself is written atomically)."""
    out = Path(out)
    if out.is_dir():
        raise AnimateError(f"{out}: is a folder, not an output file")
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise AnimateError(f"{out}: unsupported output format {out.suffix or '(none)'!r} "
                           f"(use {', '.join(OUTPUT_SUFFIXES)})")
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise AnimateError(f"{out}: cannot write: {parent} is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise AnimateError(f"{out}: cannot write to {parent} ({err.strerror or err})") from None
    return out


def read_source(path: str | Path) -> np.ndarray:
    """The source image as H×W×3 uint8 RGB: an image file, or the first frame of a video."""
    from preprocessing.video_io import ImageError, VideoError, iter_frames, read_image

    try:
        return read_image(path)
    except ImageError as image_err:
        if not Path(path).is_file():
            raise
        try:
            return next(iter_frames(path, 0, 1))
        except VideoError:
            raise ImageError(f"{path}: not a readable image or video") from image_err


def checked_frames(path: str | Path, expected: int) -> Iterator[np.ndarray]:
    """The frames of a video, failing at the end when far fewer decode than the container lists (truncation)."""
    from preprocessing.video_io import VideoError, iter_frames

    count = 0
    for frame in iter_frames(path):
        count += 1
        yield frame
    if count < expected - 1:  # one frame of slack: some containers count a trailing empty packet
        raise VideoError(f"{path}: truncated or corrupt video: decoded {count} of {expected} frames")


def select_best_frame(animator: Animator, source: np.ndarray, source_path: str | Path, driving: str | Path,
                      num_frames: int, progress: bool, landmarks: Landmarker | None = None) -> int:
    """The driving frame whose face landmarks best match the source's (on the model's crops)."""
    from tqdm import tqdm

    if landmarks is None:  # the best backend present: face-alignment with its weights, else dlib 68
        from animate.backends import best_landmarker

        landmarks = best_landmarker(str(animator.device))
    source_landmarks = landmarks(to_uint8(animator.prepare(source))[0])
    if source_landmarks is None:
        raise AnimateError(f"{source_path}: no face found (needed by --find-best-frame)")
    frames = tqdm(checked_frames(driving, num_frames), total=num_frames, unit="frame", desc="landmarks",
                  disable=not progress)
    driving_landmarks = [landmarks(to_uint8(animator.prepare(f))[0]) for f in frames]
    try:
        return find_best_frame(source_landmarks, driving_landmarks)
    except ValueError as err:
        raise AnimateError(f"{driving}: {err}") from None


def animate_file(animator: Animator, source: str | Path, driving: str | Path, out: str | Path, *,
                 layout: str = "result", draw_kp: bool = False, output_size: tuple[int, int] | None = None,
                 use_best_frame: bool = False, landmarks: Landmarker | None = None,
                 progress: bool = True, auto_crop=None) -> AnimateResult:  # noqa: ANN001
    """Animate a source image file with a driving video file into `out` (driving fps and audio kept).

    With `use_best_frame`, relative motion starts from the driving frame whose face landmarks (`landmarks`,
    default the best backend present) best match the source's; frames are still written in their order.
    `auto_crop` (animate.files.AutoCropOptions): crop on the subject, paste back into the full frame.
    """
    if auto_crop is not None:
        from animate.files import animate_file as animate_auto

        return animate_auto(animator, source, driving, out, auto_crop, layout=layout, draw_kp=draw_kp,
                            output_size=output_size, use_best_frame=use_best_frame, landmarks=landmarks,
                            progress=progress)
    from tqdm import tqdm

    from preprocessing.video_io import VideoWriter, iter_frames, probe_video

    out = check_output(out)
    source_frame = read_source(source)
    info = probe_video(driving)
    started = time.perf_counter()
    best, initial, notes = None, None, ()
    if use_best_frame:
        if landmarks is None:
            from animate.backends import best_landmarker

            landmarks = best_landmarker(str(animator.device))
        notes = (f"best frame by {getattr(landmarks, 'name', 'custom')} landmarks",)
        best = select_best_frame(animator, source_frame, source, driving, info.num_frames, progress, landmarks)
        initial = next(iter_frames(driving, best, best + 1))
    frames = animator.frames(source_frame, checked_frames(driving, info.num_frames), driving_initial=initial,
                             layout=layout, draw_kp=draw_kp, output_size=output_size)
    with VideoWriter(out, info.fps, audio_from=driving if info.has_audio else None) as writer, \
            tqdm(total=info.num_frames, unit="frame", desc=f"animate {Path(out).name}", disable=not progress,
                 dynamic_ncols=True) as bar:
        for frame in frames:
            writer.write(frame)
            bar.update(1)
            height, width = frame.shape[:2]
    return AnimateResult(path=str(out), num_frames=writer.num_frames, fps=info.fps, width=width, height=height,
                         has_audio=info.has_audio, best_frame=best, seconds=time.perf_counter() - started,
                         notes=notes)


def parse_size(text: str) -> tuple[int, int]:
    """'256' or 'WxH' → (H, W), even numbers (H.264 with 4:2:0 chroma needs them)."""
    try:
        w, h = (int(v) for v in text.lower().split("x")) if "x" in text.lower() else (int(text),) * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or WxH, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"sizes must be positive and even (H.264 4:2:0), got {text!r}")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fomm", description="First Order Motion Model: animate, inspect.")
    sub = parser.add_subparsers(dest="command", required=True)

    a = sub.add_parser("animate", help="animate a source image with a driving video")
    a.add_argument("--config", required=True, help="model YAML (e.g. configs/vox-256.yaml)")
    a.add_argument("--checkpoint", help="original-format checkpoint (e.g. vox-cpk.pth.tar)")
    a.add_argument("--random-init", action="store_true", help="no checkpoint: random weights (tests, demos)")
    a.add_argument("--source", required=True, help="source image (any size; RGB/RGBA/grey/16-bit)")
    a.add_argument("--driving", required=True, help="driving video")
    a.add_argument("--out", required=True, help="output video (.mp4, .mov, .mkv)")
    motion = a.add_mutually_exclusive_group()
    motion.add_argument("--relative", dest="relative", action="store_true", default=True,
                        help="relative motion transfer (default; Sec. 3.4)")
    motion.add_argument("--absolute", dest="relative", action="store_false", help="absolute keypoints")
    a.add_argument("--adapt-scale", action=argparse.BooleanOptionalAction, default=True,
                   help="scale motion by the ratio of keypoint hull areas (default on)")
    a.add_argument("--find-best-frame", action="store_true",
                   help="start relative motion from the driving frame whose face pose best matches the source")
    a.add_argument("--crop", choices=("auto", *CROP_MODES),
                   help="auto: crop on the detected face/person and track it (default for face and body configs "
                        "when a detector runs here); center/pad/none: fit the whole frame (default otherwise)")
    a.add_argument("--subject", type=int, help="with --crop auto: subject N counted from the left (default largest)")
    a.add_argument("--paste-back", action=argparse.BooleanOptionalAction, default=True,
                   help="with --crop auto: blend the result into the full source frame (default on)")
    a.add_argument("--smooth", type=float, default=3.0,
                   help="one-euro smoothing of driving keypoints and crop box, frames at rest (default 3; 0 off)")
    a.add_argument("--layout", choices=LAYOUTS, default="result", help="result, or source | driving | result")
    a.add_argument("--draw-keypoints", action="store_true", help="draw the keypoints the model uses")
    a.add_argument("--output-size", type=parse_size, help="panel size N or WxH (default: the model's)")
    a.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    a.add_argument("--batch-size", type=int, default=8, help="driving frames per forward pass (default 8)")
    a.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default: bf16 where the device computes it natively, else fp32), fp32 or bf16")
    a.add_argument("--engine", choices=("torch", "onnx"), default="torch",
                   help="torch (default), or the exported graphs on ONNX Runtime (CPU, fp32; the export extra)")
    a.add_argument("--onnx", metavar="DIR", help="with --engine onnx: a `fomm export` directory (default: export "
                   "the given checkpoint to a temporary one first)")
    a.add_argument("--seed", type=int, default=0, help="seed of a --random-init model")
    a.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("export", help="write the model as ONNX graphs (kp detector, source, per-frame step)")
    e.add_argument("--config", required=True, help="model YAML (e.g. configs/vox-256.yaml)")
    e.add_argument("--checkpoint", help="original-format checkpoint")
    e.add_argument("--random-init", action="store_true", help="no checkpoint: random weights (tests, demos)")
    e.add_argument("--seed", type=int, default=0, help="seed of a --random-init model")
    e.add_argument("--out", required=True, help="directory for the .onnx files")

    i = sub.add_parser("info", help="parameter counts of a config; does a checkpoint fit it?")
    i.add_argument("--config", required=True)
    i.add_argument("--checkpoint")
    i.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser("runs", help="compare training / evaluation runs: `fomm runs compare ...`", add_help=False)
    return parser


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AnimateError(f"--device {name!r}: not a device (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AnimateError(f"--device {name}: CUDA is not available on this machine")
    return device


def cmd_animate(args: argparse.Namespace) -> int:
    if args.checkpoint is None and not args.random_init:
        raise AnimateError("--checkpoint is required (or pass --random-init for an untrained model)")
    if args.batch_size < 1:
        raise AnimateError(f"--batch-size must be at least 1, got {args.batch_size}")
    from preprocessing.video_io import probe_video

    check_output(args.out)
    device = _device(args.device)
    read_source(args.source)  # bad inputs fail here, before a model is built
    probe_video(args.driving)
    if args.smooth < 0:
        raise AnimateError(f"--smooth must be ≥ 0 (0 disables), got {args.smooth}")
    auto_crop = auto_crop_options(args)  # a --crop auto without a subject detector fails here
    if args.checkpoint is None:
        print(RANDOM_INIT_WARNING, file=sys.stderr)
    if args.onnx is not None and args.engine != "onnx":
        raise AnimateError("--onnx needs --engine onnx")
    if args.engine == "onnx" and device.type != "cpu":
        raise AnimateError(f"--engine onnx runs on the CPU, not --device {args.device}")
    animator = Animator.from_config(args.config, args.checkpoint, random_init=args.random_init, seed=args.seed,
                                    relative=args.relative, adapt_movement_scale=args.adapt_scale,
                                    crop=args.crop if auto_crop is None else "none", batch_size=args.batch_size,
                                    smooth=args.smooth, device=device, precision=args.precision)
    if args.engine == "onnx":
        animator = _onnx_module().onnx_animator(animator, args.onnx)
    result = animate_file(animator, args.source, args.driving, args.out, layout=args.layout,
                          draw_kp=args.draw_keypoints, output_size=args.output_size,
                          use_best_frame=args.find_best_frame, progress=not args.quiet, auto_crop=auto_crop)
    best = f", relative motion from driving frame {result.best_frame}" if result.best_frame is not None else ""
    print(f"{result.path}: {result.num_frames} frames {result.width}×{result.height} at {result.fps:g} fps, "
          f"audio {'kept' if result.has_audio else 'none'}{best}; {result.frames_per_second:.2f} frames/s")
    for note in result.notes:
        print(f"  {note}")
    return 0


def auto_crop_options(args: argparse.Namespace):  # noqa: ANN201 - animate.files.AutoCropOptions | None
    """The auto-crop options of `fomm animate` (args.crop settled), or None for --crop center|pad|none."""
    from animate.files import resolve_crop

    args.crop, options = resolve_crop(load_config(args.config), args.crop, subject=args.subject,
                                      paste_back=args.paste_back, smooth=args.smooth)
    return options


def _onnx_module():  # noqa: ANN202 - fomm.onnx_export, once ONNX Runtime is known to be installed
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise AnimateError("the ONNX engine needs ONNX Runtime: pip install 'fomm-pipeline[export]'") from None
    from fomm import onnx_export

    return onnx_export


def cmd_export(args: argparse.Namespace) -> int:
    if args.checkpoint is None and not args.random_init:
        raise AnimateError("--checkpoint is required (or pass --random-init for an untrained model)")
    onnx_export = _onnx_module()
    animator = Animator.from_config(args.config, args.checkpoint, random_init=args.random_init, seed=args.seed,
                                    precision="fp32", channels_last=False)
    out = onnx_export.export_onnx(animator.kp_detector, animator.generator, animator.frame_size, args.out)
    print(f"{out}: {', '.join(onnx_export.FILES)} (opset {onnx_export.OPSET})")
    return 0


def model_info(config: str | Path, checkpoint: str | Path | None = None) -> dict:
    """Parameter counts per network and, with a checkpoint, whether each of its state dicts fits the config."""
    from fomm.models import build_networks

    cfg = load_config(config)
    nets = vars(build_networks(cfg.model_params, discriminator=True))
    info: dict = {"config": str(config), "frame_shape": list(cfg.dataset_params.shape),
                  "num_kp": cfg.model_params.common_params.num_kp,
                  "parameters": {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}}
    info["parameters"]["total"] = sum(info["parameters"].values())
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)
        fit = {}
        for name, net in nets.items():
            if name not in state:
                fit[name] = "absent"
                continue
            try:
                load_state(net, state[name], checkpoint, name)
                fit[name] = "ok"
            except CheckpointError as err:
                fit[name] = str(err)
        info.update(checkpoint=str(checkpoint), epoch=int(state.get("epoch", 0)), fits=fit,
                    ok=all(v in ("ok", "absent") for v in fit.values()) and fit.get("generator") == "ok"
                    and fit.get("kp_detector") == "ok")
    return info


def cmd_info(args: argparse.Namespace) -> int:
    info = model_info(args.config, args.checkpoint)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{info['config']}: {info['num_kp']} keypoints, frames {'×'.join(map(str, info['frame_shape']))}")
        for name, count in info["parameters"].items():
            print(f"  {name:<14} {count:>12,} parameters")
        for name, fit in info.get("fits", {}).items():
            print(f"  {info['checkpoint']} [{name}]: {fit}")
    return 0 if info.get("ok", True) else 1


def cmd_runs(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: fomm runs compare [ARGS...]  (see `fomm runs compare --help`)",
              file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] != "compare":
        raise AnimateError(f"fomm runs: unknown action {argv[0]!r} (available: compare)")
    try:
        from evaluation.compare import main as compare_main
    except ModuleNotFoundError as err:
        raise AnimateError(f"fomm runs compare: evaluation.compare is not available ({err})") from None
    return int(compare_main(list(argv[1:])) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Input errors (the project's own types, services.cli) are one line on stderr and exit 1; --debug: traceback."""
    from services.cli import run_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None

    def run(argv: list[str]) -> int:
        if command == "runs":  # everything after `runs compare` belongs to evaluation.compare's own parser
            return cmd_runs(argv[1:])
        args = build_parser().parse_args(argv)
        return {"animate": cmd_animate, "export": cmd_export}.get(args.command, cmd_info)(args)

    return run_cli(run, argv, f"fomm {command}", status=1, extra=(FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
