"""The whole chain on the built-in synthetic set, locally: preprocess → train (2 DDP workers) → tune →
evaluate → animate, with a local Ray instance and a local MLflow store. Re-running skips finished stages.

`python pipelines/demo.py --out demo_output`   (what `make demo` runs)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repo root importable

from services import checks  # noqa: E402
from services.atomic import atomic_open  # noqa: E402
from services.cli import UserError, at_least  # noqa: E402
from services.stage import Stage, Summary  # noqa: E402
from training.job import TrainJob  # noqa: E402

WORKERS = 2  # the main training run's DDP workers
MAX_VIDEOS = 1000  # a demo's synthetic set: 10**8 was taken, and generated for hours


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_output", help="everything the demo writes")
    p.add_argument("--config", default=str(ROOT / "configs" / "demo-64.yaml"), help="the model and training YAML")
    p.add_argument("--videos", type=at_least(1, at_most=MAX_VIDEOS), default=24, help="synthetic videos to generate")
    p.add_argument("--train-minutes", type=at_least(0.01, float), default=6.0,
                   help="time budget of the main training run (then a last validation and checkpoint)")
    p.add_argument("--train-steps", type=at_least(1), default=5000, help="cap on the main run's optimiser steps")
    p.add_argument("--tune-trials", type=at_least(0), default=2, help="trials of the loss-weight sweep (0: no sweep)")
    p.add_argument("--tune-steps", type=at_least(1), default=20, help="optimiser steps per sweep trial")


def build(args: argparse.Namespace) -> argparse.Namespace:
    if args.videos < 8:  # the synthetic set has 4 identities; each needs a training and a held-out video
        raise UserError(f"--videos must be at least 8 (2 per identity, so every identity has a held-out video), "
                        f"got {args.videos}")
    return args


def check(a: argparse.Namespace) -> None:
    checks.writable_dir("--out", a.out)
    checks.existing_file("--config", a.config, "a FOMM YAML")
    checks.not_an_input("--out", a.out, {"--config": a.config}, folder=True)
    checks.own_folder("--out", a.out, {"stages", "shards", "mlflow.db"}, "demo")  # an earlier demo's is resumed
    cfg = TrainJob(config=a.config, data="-", storage=a.out).load_config()  # a ConfigError names the file and key
    (h, w), batch = cfg.dataset_params.shape[:2], cfg.train_params.batch_size
    if h != w:  # found once preprocessing had run
        raise UserError(f"--config {a.config}: dataset_params.frame_shape {h}×{w}: the demo's synthetic clips are square")
    if batch % WORKERS:
        raise UserError(f"--config {a.config}: train_params.batch_size {batch} must divide evenly over the demo's "
                        f"{WORKERS} training workers")
    a.size = h  # the clips are made at the config's frame size


def stage(out: Path, name: str, run, ray: bool = True) -> dict:  # noqa: ANN001 - a zero-argument callable → dict
    """Run a stage once (its result kept in <out>/stages/<name>.json); Ray starts with the first stage that needs it."""
    record = out / "stages" / f"{name}.json"
    if record.is_file():
        try:
            done = json.loads(record.read_text())
            print(f"[{name}] done earlier, skipped ({record})")
            return done
        except ValueError:  # edited, or damaged: a traceback before
            print(f"[{name}] its record {record} is not JSON: running it again")
    print(f"[{name}] running …", flush=True)
    if ray:  # a laptop: room for the 2 train workers and Ray Data's decoding tasks
        from training.trainer import ensure_training_ray

        ensure_training_ray(TrainJob(config="-", data="-", storage=str(out), workers=WORKERS))
    start = time.perf_counter()
    result = {**run(), "seconds": round(time.perf_counter() - start, 1)}
    with atomic_open(record, "w") as f:
        f.write(json.dumps(result, indent=1, default=str))
    print(f"[{name}] finished in {result['seconds']} s", flush=True)
    return result


def run(a: argparse.Namespace, args: argparse.Namespace) -> Summary:
    from evaluation.ray_jobs import evaluate
    from evaluation.report import plot_curves
    from evaluation.runner import EvalConfig
    from preprocessing.config import PreprocessConfig
    from preprocessing.ray_jobs import run_preprocess
    from services.tracking.queries import metric_history
    from training.trainer import fit
    from tuning.spaces import SearchSpace
    from tuning.sweep import SweepJob, run_sweep

    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    shards = str(out / "shards")

    pre = stage(out, "preprocess", lambda: run_preprocess(PreprocessConfig(
        input=f"synthetic:{a.videos}", output=shards, kind="none", size=a.size, synthetic_videos=a.videos,
        min_frames=16, test_fraction=0.2, workers=2)))
    base = TrainJob(config=a.config, data=shards, storage=str(out / "runs"), name="demo", workers=WORKERS,
                    max_steps=a.train_steps, max_minutes=a.train_minutes, lr_schedule="budget",  # decays fit the run
                    tracking_uri=uri, experiment="fomm-demo", resume=True, num_val_clips=4)
    train = stage(out, "train", lambda: vars(fit(base)))
    space = SearchSpace.from_yaml(ROOT / "configs" / "sweeps" / "loss-weights.yaml")
    tune = {"best_config": None} if a.tune_trials == 0 else stage(out, "tune", lambda: vars(run_sweep(SweepJob(
        base=dataclasses.replace(base, name="demo-sweep", workers=1, max_steps=a.tune_steps, max_minutes=None,
                                 num_val_clips=2, log_images_every=0, resume=False),
        space=space, num_samples=a.tune_trials, out=str(out / "best.yaml")))))
    ev = stage(out, "evaluate", lambda: {k: v for k, v in vars(evaluate(EvalConfig(
        config_path=a.config, checkpoint=train["checkpoint"], data=shards, out_dir=str(out / "eval"),
        domain="synthetic", max_videos=4, num_workers=2, tracking_uri=uri, experiment="fomm-demo",
        run_name="demo-eval"))).items() if k in ("run_id", "aggregate", "table", "report", "out_dir")})
    animation = stage(out, "animate", lambda: animate(a.config, train["checkpoint"], out), ray=False)
    curves = {k: metric_history(uri, train["mlflow_run_id"], k) for k in ("total", "perceptual", "val_l1")}
    plot = plot_curves(curves, out / "training_curves.png", "demo training run")

    return Summary(notes=["\n=== fomm demo finished ===",
                          f"shards:          {pre['shards']} ({pre['num_clips']} clips)",
                          f"checkpoint:      {train['checkpoint']}",
                          f"best sweep cfg:  {tune['best_config']}",
                          ev["table"],
                          f"animation:       {animation['video']}",
                          f"training curves: {plot}",
                          f"eval report:     {ev['report'].get('html')}",
                          f"MLflow runs:     mlflow ui --backend-store-uri {uri}"])


def animate(config: str, checkpoint: str, out: Path) -> dict:
    """Animate the first frame of one synthetic video with the motion of another, side by side."""
    from animate.cli import main as fomm_main

    videos = sorted((out / "shards" / "_work" / "synthetic_raw").glob("*.mp4"))
    if not videos:
        raise FileNotFoundError(f"{out / 'shards' / '_work' / 'synthetic_raw'}: no synthetic videos to animate")
    source, driving = videos[0], videos[min(1, len(videos) - 1)]  # `fomm animate` takes a video's first frame
    video = out / "animation.mp4"
    code = fomm_main(["animate", "--config", config, "--checkpoint", checkpoint, "--source", str(source),
                      "--driving", str(driving), "--out", str(video), "--layout", "side-by-side",
                      "--draw-keypoints", "--output-size", "128", "--quiet"])
    if code:
        raise RuntimeError(f"fomm animate exited with {code}")
    return {"video": str(video), "source": str(source), "driving": str(driving)}


STAGE = Stage("demo", __doc__, add_flags, build, check, run,
              keeps=lambda a: {a.out: "rerun the same command: finished stages are skipped"})
main, parse_args = STAGE.main, STAGE.parse_args


if __name__ == "__main__":
    sys.exit(main())
