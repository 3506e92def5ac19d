"""The `fomm` command line: `animate` (image + driving video → video), `export` (ONNX graphs), `info` (model sizes,
checkpoint fit), `runs compare` (evaluation.compare). Parsing and one line per command; the work is in animate.files."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from animate.files import animate_file, build_animator, check_output, probe_driving, read_source
from animate.onnx_engine import onnx_animator
from animate.options import AnimationOptions, ModelOptions
from fomm.animator import Animator, AnimatorError
from fomm.checkpoint import CheckpointError, load_state, read_checkpoint
from fomm.config.schema import load_config
from fomm.models import build_networks
from fomm.onnx_export import FILES, OPSET, export_onnx
from services import checks
from services.cli import ArgumentParser, field_flags, field_values, run_cli

MAX_OUTPUT_SIZE = 8192
RANDOM_INIT_WARNING = ("WARNING: --random-init: the model has RANDOM weights (no checkpoint); the output shows "
                       "the pipeline working, not a trained animation")


def parse_size(text: str) -> tuple[int, int]:
    """'256' or 'WxH' → (H, W), even numbers (H.264 with 4:2:0 chroma needs them)."""
    try:
        w, h = (int(v) for v in text.lower().split("x")) if "x" in text.lower() else (int(text),) * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or WxH, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"sizes must be positive and even (H.264 4:2:0), got {text!r}")
    if max(w, h) > MAX_OUTPUT_SIZE:
        raise argparse.ArgumentTypeError(f"sizes must be ≤ {MAX_OUTPUT_SIZE} (H.264 level 6.2), got {text!r}")
    return h, w


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that make the model: `fomm animate`, `fomm export` and the batch job (pipelines/animate_batch.py)."""
    model = field_flags(parser, ModelOptions)  # help, types and ranges: ModelOptions' rules
    model("config", required=True)
    model("checkpoint")
    model("random_init", action="store_true")
    model("seed")


def add_animation_flags(parser: argparse.ArgumentParser) -> None:
    """How to animate: `fomm animate` and the batch job (pipelines/animate_batch.py); `check_animation_flags` validates them."""
    motion = parser.add_mutually_exclusive_group()
    motion.add_argument("--relative", dest="relative", action="store_true", default=True,
                        help="relative motion transfer (default; Sec. 3.4)")
    motion.add_argument("--absolute", dest="relative", action="store_false", help="absolute keypoints")
    option = field_flags(parser, AnimationOptions)  # help, choices, types and ranges: AnimationOptions' rules
    option("adapt_movement_scale", action=argparse.BooleanOptionalAction)
    for name in ("crop", "subject", "subject_kind"):
        option(name)
    option("paste_back", action=argparse.BooleanOptionalAction)
    for name in ("smooth", "layout", "device", "batch_size", "precision"):
        option(name)


def weights(args: argparse.Namespace) -> dict:
    """The model flags' weights: a checkpoint, or an explicit --random-init (one line otherwise)."""
    if args.checkpoint is None and not args.random_init:
        raise AnimatorError("--checkpoint is required (or pass --random-init for an untrained model)")
    return {"checkpoint": args.checkpoint, "random_init": args.random_init, "seed": args.seed}


def check_animation_flags(args: argparse.Namespace) -> torch.device:
    """The animation flags keep their rules (also when set in Python) and the device is here; returns it."""
    AnimationOptions(**field_values(AnimationOptions, args))
    return torch.device(checks.device("--device", args.device))


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="fomm", description="First Order Motion Model: animate, inspect.")
    sub = parser.add_subparsers(dest="command", required=True)

    a = sub.add_parser("animate", help="animate a source image with a driving video")
    add_model_flags(a)
    a.add_argument("--source", required=True, help="source image (any size; RGB/RGBA/grey/16-bit)")
    a.add_argument("--driving", required=True, help="driving video")
    a.add_argument("--out", required=True, help="output video (.mp4, .mov, .mkv)")
    add_animation_flags(a)
    a.add_argument("--find-best-frame", action="store_true",
                   help="start relative motion from the driving frame whose face pose best matches the source")
    a.add_argument("--draw-keypoints", action="store_true", help="draw the keypoints the model uses")
    a.add_argument("--output-size", type=parse_size, help="panel size N or WxH (default: the model's)")
    a.add_argument("--engine", choices=("torch", "onnx"), default="torch",
                   help="torch (default), or the exported graphs on ONNX Runtime (CPU, fp32; the export extra)")
    a.add_argument("--onnx", metavar="DIR", help="with --engine onnx: a `fomm export` directory (default: export "
                   "the given checkpoint to a temporary one first)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("export", help="write the model as ONNX graphs (kp detector, source, per-frame step)")
    add_model_flags(e)
    e.add_argument("--out", required=True, help="directory for the .onnx files")

    i = sub.add_parser("info", help="parameter counts of a config; does a checkpoint fit it?")
    i.add_argument("--config", required=True)
    i.add_argument("--checkpoint")
    i.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser("runs", help="compare training / evaluation runs: `fomm runs compare ...`", add_help=False)
    return parser


def cmd_animate(args: argparse.Namespace) -> int:
    model = weights(args)
    device = check_animation_flags(args)
    checks.not_an_input("--out", args.out, {"--source": args.source, "--driving": args.driving,
                                            "--config": args.config, "--checkpoint": args.checkpoint,
                                            "--onnx": args.onnx})
    check_output(args.out)
    read_source(args.source)  # bad inputs fail here, before a model is built
    probe_driving(args.driving)
    if args.onnx is not None and args.engine != "onnx":
        raise AnimatorError("--onnx needs --engine onnx")
    if args.engine == "onnx" and device.type != "cpu":
        raise AnimatorError(f"--engine onnx runs on the CPU, not --device {args.device}")
    animator, auto_crop = build_animator(args.config, **model, relative=args.relative,
                                         adapt_movement_scale=args.adapt_movement_scale, crop=args.crop,
                                         subject=args.subject, paste_back=args.paste_back, smooth=args.smooth,
                                         subject_kind=args.subject_kind,
                                         batch_size=args.batch_size, device=device, precision=args.precision)
    if args.checkpoint is None:
        print(RANDOM_INIT_WARNING, file=sys.stderr)
    if args.engine == "onnx":
        _require_export_extra()
        animator = onnx_animator(animator, args.onnx)
    result = animate_file(animator, args.source, args.driving, args.out, layout=args.layout,
                          draw_kp=args.draw_keypoints, output_size=args.output_size,
                          use_best_frame=args.find_best_frame, progress=not args.quiet, auto_crop=auto_crop)
    best = f", relative motion from driving frame {result.best_frame}" if result.best_frame is not None else ""
    print(f"{result.path}: {result.num_frames} frames {result.width}×{result.height} at {result.fps:g} fps, "
          f"audio {'kept' if result.has_audio else 'none'}{best}; {result.frames_per_second:.2f} frames/s")
    for note in result.notes:
        print(f"  {note}")
    return 0


def _require_export_extra() -> None:
    """The `export` extra (ONNX Runtime stands for it) is installed, or one line saying how to get it."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise AnimatorError("the ONNX engine needs ONNX Runtime: pip install 'fomm-pipeline[export]'") from None


def cmd_export(args: argparse.Namespace) -> int:
    model = weights(args)
    checks.not_an_input("--out", args.out, {"--config": args.config, "--checkpoint": args.checkpoint})
    checks.writable_dir("--out", args.out)
    _require_export_extra()
    animator = Animator.from_config(args.config, **model, precision="fp32", channels_last=False)
    out = export_onnx(animator.kp_detector, animator.generator, animator.frame_size, args.out)
    print(f"{out}: {', '.join(FILES)} (opset {OPSET})")
    return 0


def model_info(config: str | Path, checkpoint: str | Path | None = None) -> dict:
    """Parameter counts per network and, with a checkpoint, whether each of its state dicts fits the config."""
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
        raise AnimatorError(f"fomm runs: unknown action {argv[0]!r} (available: compare)")
    try:
        from evaluation.compare import main as compare_main
    except ModuleNotFoundError as err:
        raise AnimatorError(f"fomm runs compare: evaluation.compare is not available ({err})") from None
    return int(compare_main(list(argv[1:])) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Input errors (the project's own types, services.cli) are one line on stderr and exit 1; --debug: traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None

    def run(argv: list[str]) -> int:
        if command == "runs":  # everything after `runs compare` belongs to evaluation.compare's own parser
            return cmd_runs(argv[1:])
        args = build_parser().parse_args(argv)
        return {"animate": cmd_animate, "export": cmd_export}.get(args.command, cmd_info)(args)

    prog = f"fomm {command}" if command in ("animate", "export", "info", "runs") else "fomm"
    return run_cli(run, argv, prog, status=1, extra=(FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
