"""The `fomm` subcommands as stages (services.stage): `animate` (image + driving video → video), `export` (ONNX
graphs), `info` (model sizes, checkpoint fit). Flags, checks and one summary each; the work is in animate.files.
PyTorch is imported where a check or the work needs it: a mistyped flag or --help answers in a fraction of a
second, not the 2 s torch takes to import."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from animate.options import (
    MAX_OUTPUT_SIZE,
    AnimationOptions,
    add_animation_flags,
    add_model_flags,
    check_animation_flags,
    check_model_files,
    parse_size,
    registered_weights,
    weights,
)
from services import checks, storage
from services.atomic import remove_leftovers
from services.cli import USER_ERROR_STATUS, field_values
from services.errors import UserError
from services.stage import Stage, Summary


def require_export_extra() -> None:
    """The `export` extra (ONNX Runtime stands for it) is installed, or one line saying how to get it."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UserError("the ONNX engine needs ONNX Runtime: pip install 'fomm-pipeline[export]'") from None


# fomm animate

def animate_flags(a: argparse.ArgumentParser) -> None:
    add_model_flags(a)
    a.add_argument("--source", required=True, help="source image (any size; RGB/RGBA/grey/16-bit)")
    a.add_argument("--driving", required=True, help="driving video")
    a.add_argument("--out", required=True, help="output video (.mp4, .mov, .mkv, .webm) or animated .gif")
    add_animation_flags(a)
    a.add_argument("--find-best-frame", action="store_true",
                   help="start relative motion from the driving frame whose face pose best matches the source")
    a.add_argument("--draw-keypoints", action="store_true", help="draw the keypoints the model uses")
    a.add_argument("--output-size", type=parse_size, help="panel size N or WxH (default: the model's); with "
                   "paste-back the frame fits inside it (default: the source's, ≤ 3840 on its longer side)")
    a.add_argument("--engine", choices=("torch", "onnx"), default="torch",
                   help="torch (default), or the exported graphs on ONNX Runtime (CPU, fp32; the export extra)")
    a.add_argument("--onnx", metavar="DIR", help="with --engine onnx: a `fomm export` directory (default: export "
                   "the given checkpoint to a temporary one first)")
    a.add_argument("--quiet", action="store_true", help="no progress bar (a models:/ checkpoint's copy shows none)")


def build_animate(args: argparse.Namespace) -> argparse.Namespace:
    if args.quiet:  # MLflow's own bar, when weights() copies a registered model
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    weights(args)
    check_animation_flags(args)
    if args.onnx is not None and args.engine != "onnx":
        raise UserError("--onnx needs --engine onnx")
    if args.engine == "onnx" and args.device != "cpu":
        raise UserError(f"--engine onnx runs on the CPU, not --device {args.device}")
    return args


def check_animate(args: argparse.Namespace) -> None:
    """Before a model is built or anything written: the files exist and decode, the output is new and writable."""
    check_model_files(args.config, args.checkpoint)
    for flag, path in (("--source", args.source), ("--driving", args.driving), ("--out", args.out)):
        if storage.is_remote(path) or storage.url_problem(path):  # Path() would make 's3://b/x' the local 's3:/b/x'
            raise UserError(f"{flag} {path}: fomm animate reads and writes local files (pipelines/animate_batch.py "
                            "takes s3:// sources, drivings and outputs)")
    checks.not_an_input("--out", args.out, {"--source": args.source, "--driving": args.driving,
                                            "--config": args.config, "--checkpoint": args.checkpoint,
                                            "--onnx": args.onnx})
    # torch: after the checks that need none
    from animate.files import check_output, probe_driving, read_source

    check_output(args.out)
    checks.new_file("--out", args.out)
    checks.writable_file("--out", args.out)  # room on its disk
    if args.onnx is not None:
        from animate.onnx_engine import check_export as check_export_folder

        check_export_folder(args.onnx)
    if args.layout == "side-by-side" and args.output_size and 3 * args.output_size[1] > MAX_OUTPUT_SIZE:
        height, width = args.output_size  # a traceback from the encoder once all the frames were made
        raise UserError(f"--output-size {width}x{height} with --layout side-by-side: three panels make frames "
                        f"{3 * width:,} wide, above H.264 level 6.2's {MAX_OUTPUT_SIZE:,} (a panel at most "
                        f"{MAX_OUTPUT_SIZE // 6 * 2} wide)")
    read_source(args.source)
    probe_driving(args.driving)


def run_animate(args: argparse.Namespace, _: argparse.Namespace) -> Summary:
    from animate.files import animate_file, build_animator
    from animate.onnx_engine import onnx_animator

    options = field_values(AnimationOptions, args)  # the device too: build_animate checked them
    options.pop("layout")  # animate_file's; the rest make the Animator and its crop
    animator, auto_crop = build_animator(args.config, **weights(args), **options)
    if args.engine == "onnx":
        require_export_extra()
        animator = onnx_animator(animator, args.onnx)
    begun = time.time()
    result = animate_file(animator, args.source, args.driving, args.out, layout=args.layout,
                          draw_kp=args.draw_keypoints, output_size=args.output_size,
                          use_best_frame=args.find_best_frame, progress=not args.quiet, auto_crop=auto_crop)
    remove_leftovers([result.path], before=begun)  # an earlier, killed run's temporary of the same --out
    best = f", relative motion from driving frame {result.best_frame}" if result.best_frame is not None else ""
    return Summary(notes=[f"{result.path}: {result.num_frames} frames {result.width}×{result.height} at "
                          f"{result.fps:g} fps, audio {'kept' if result.has_audio else 'none'}{best}; "
                          f"{result.frames_per_second:.2f} frames/s", *(f"  {note}" for note in result.notes),
                          # with the result: on stderr before it, an error's line was its second
                          *(["WARNING: --random-init: the model has RANDOM weights (no checkpoint); the output shows "
                             "the pipeline working, not a trained animation"] if args.checkpoint is None else [])])


# fomm export

def export_flags(e: argparse.ArgumentParser) -> None:
    add_model_flags(e)
    e.add_argument("--out", required=True, help="directory for the .onnx files")


def build_export(args: argparse.Namespace) -> argparse.Namespace:
    weights(args)
    return args


def check_export(args: argparse.Namespace) -> None:
    check_model_files(args.config, args.checkpoint)
    checks.not_an_input("--out", args.out, {"--config": args.config, "--checkpoint": args.checkpoint}, folder=True)
    checks.writable_dir("--out", args.out)
    require_export_extra()
    from animate.onnx_engine import export_manifest
    from fomm.onnx_export import FILES, MANIFEST

    out = Path(args.out)  # an earlier export (its manifest there) is replaced; a file no export of ours wrote is not
    if export_manifest(out) is None and (theirs := [f for f in (*FILES, MANIFEST) if os.path.lexists(out / f)]):
        raise UserError(f"--out {args.out}: holds {theirs[0]}, not written by `fomm export` (no {MANIFEST} of "
                        "an export there); a file is never overwritten: choose another folder")


def run_export(args: argparse.Namespace, _: argparse.Namespace) -> Summary:
    from animate.onnx_engine import save_export
    from fomm.animator import Animator
    from fomm.onnx_export import FILES, OPSET, export_onnx

    animator = Animator.from_config(args.config, **weights(args), precision="fp32", channels_last=False)
    save_export(export_onnx(animator.kp_detector, animator.generator, animator.frame_size), args.out)
    return Summary(notes=[f"{args.out}: {', '.join(FILES)} (opset {OPSET})"])


# fomm info

def info_flags(i: argparse.ArgumentParser) -> None:
    i.add_argument("--config", help="model YAML (e.g. configs/vox-256.yaml); a models:/ --checkpoint brings the one "
                   "registered with it")
    i.add_argument("--checkpoint", help="original-format checkpoint: does each network's state dict fit the config?")
    i.add_argument("--json", action="store_true", help="print JSON")


def model_info(config: str | Path, checkpoint: str | Path | None = None) -> dict:
    """Parameter counts per network and, with a checkpoint, whether each of its state dicts fits the config."""
    from fomm.checkpoint import CheckpointError, checkpoint_epoch, load_state, read_checkpoint
    from fomm.config.schema import load_config
    from fomm.models import build_networks

    cfg = load_config(config)
    nets = vars(build_networks(cfg.model_params, discriminator=True))
    info: dict = {"config": str(config), "frame_shape": list(cfg.dataset_params.shape),
                  "num_kp": cfg.model_params.common_params.num_kp,
                  "parameters": {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}}
    info["parameters"]["total"] = sum(info["parameters"].values())
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)
        fit = dict.fromkeys(nets, "absent")
        for name in nets.keys() & state.keys():
            try:
                load_state(nets[name], state[name], checkpoint, name)
                fit[name] = "ok"
            except CheckpointError as err:
                fit[name] = str(err)
        ok = fit["generator"] == fit["kp_detector"] == "ok" and fit["discriminator"] in ("ok", "absent")
        info.update(checkpoint=str(checkpoint), epoch=checkpoint_epoch(state, checkpoint), fits=fit, ok=ok)
    return info


def run_info(args: argparse.Namespace, _: argparse.Namespace) -> Summary:
    info = model_info(args.config, args.checkpoint)
    if args.json:
        notes = [json.dumps(info, indent=2)]
    else:
        notes = [f"{info['config']}: {info['num_kp']} keypoints, frames {'×'.join(map(str, info['frame_shape']))}",
                 *(f"  {name:<14} {count:>12,} parameters" for name, count in info["parameters"].items()),
                 *(f"  {info['checkpoint']} [{name}]: {fit}" for name, fit in info.get("fits", {}).items())]
    fits = info.get("fits", {})
    if misfit := next((name for name, fit in fits.items() if fit not in ("ok", "absent")), None):
        problem = f"its {misfit!r} cannot be used with --config {args.config} (see the table above)"
    else:  # a network animation needs is not there
        problem = f"has no {next((n for n in ('generator', 'kp_detector') if fits.get(n) == 'absent'), '')!r}"
    return Summary(notes=notes, status=0 if info.get("ok", True) else USER_ERROR_STATUS,
                   problem=f"fomm info: error: --checkpoint {args.checkpoint}: {problem}")


ANIMATE = Stage("fomm animate", "animate a source image with a driving video", animate_flags, build_animate,
                check_animate, run_animate)
EXPORT = Stage("fomm export", "write the model as ONNX graphs (kp detector, source, per-frame step)", export_flags,
               build_export, check_export, run_export)
INFO = Stage("fomm info", "parameter counts of a config; does a checkpoint fit it?", info_flags, registered_weights,
             lambda a: check_model_files(a.config, a.checkpoint), run_info)
