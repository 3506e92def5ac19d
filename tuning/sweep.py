"""Ray Tune sweep over the Ray Train job: one driver function per trial, ASHA on val_l1, MLflow child runs."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from services import storage
from services.atomic import atomic_open
from services.errors import UserError
from services.failures import every_task_fails, why
from services.tracking.queries import end_open_runs
from services.tracking.run import Tracker, end_reason, end_status
from services.tracking.store import default_tracking_uri, is_transient
from training.job import TrainJob, run_lock
from tuning.options import SweepJob
from tuning.spaces import apply, to_overrides

PARENT_FILE = "sweep_parent.json"  # beside the Tune experiment: the MLflow parent run a restore keeps using


@dataclass
class SweepResult:
    best_config: str  # YAML that pipelines/train.py accepts
    best_metrics: dict[str, Any]
    best_sample: dict[str, Any]
    parent_run_id: str
    experiment_path: str
    num_trials: int


def export_best_config(base: TrainJob, sample: dict[str, Any], out: str | Path) -> Path:
    """Base YAML + the sweep's own overrides (not --epochs) + the best sample → `out`, a YAML train.py accepts."""
    cfg = apply(dataclasses.replace(base, num_epochs=None).load_config(), sample)
    with atomic_open(out, "w") as f:  # the folders it needs are made (and go again if the write fails)
        f.write(cfg.to_yaml())
    return Path(out)


def ended_by_ray(unraisable: Any) -> None:  # noqa: ANN401 - sys.UnraisableHookArgs
    """`sys.unraisablehook` of a trial's process: the `SystemExit` that Ray's SIGTERM handler raises when Tune ends
    the trial can land in a weakref callback, where Python prints it as "Exception ignored … Traceback"; that one is
    the intended end, not an error. Anything else goes to Python's own hook."""
    if not isinstance(unraisable.exc_value, SystemExit):
        sys.__unraisablehook__(unraisable)


def train_trial(config: dict[str, Any]) -> None:
    """The per-trial driver: a full Ray Train run whose reports reach Tune through TuneReportCallback."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from training.trainer import fit_plan, plan_run

    sys.unraisablehook = ended_by_ray

    base = TrainJob(**config["__base_job"])
    sample = {k: v for k, v in config.items() if not k.startswith("__")}
    trial_id = tune.get_context().get_trial_id()
    overrides = {**base.overrides, **to_overrides(sample)}  # the sweep's own, then the sample's (applied in order)
    job = dataclasses.replace(base, name=f"trial-{trial_id}", overrides=overrides, resume=True,
                              parent_run_id=config["__parent_run_id"], experiment=config["__experiment"])
    # a trial ASHA stops never returns from here: EndTrialRuns ends its run on the driver
    fit_plan(plan_run(job), callbacks=[TuneReportCallback()])


class EndTrialRuns(tune.Callback):
    """Ends the MLflow run of a trial its own process could not end: stopped by the scheduler or failed."""

    def __init__(self, tracking_uri: str, experiment: str, parent_run_id: str) -> None:
        self.tracking_uri, self.experiment, self.parent_run_id = tracking_uri, experiment, parent_run_id

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # a trial that finished has ended its run itself: what is still RUNNING was stopped
        self._end(trial, "KILLED", "stopped by Tune before its process ended the run (early stopping, Ctrl-C)")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "FAILED", "the trial failed")

    def _end(self, trial: Any, status: str, reason: str) -> None:
        end_open_runs(self.tracking_uri, self.experiment, status, reason=reason, filter_string=(
            f"tags.mlflow.parentRunId = '{self.parent_run_id}' and attributes.run_name = 'trial-{trial.trial_id}'"))


class StopWhereTrialsFail(tune.Callback, tune.Stopper):
    """A trial that failed as every trial would (a full or read-only disk, no S3 credentials or endpoint:
    services.failures.every_task_fails) stops the sweep, its retry and the trials not yet started included; the
    error is kept in `failures` under the sweep's folder for its driver to raise (a restored sweep's copy too)."""

    failures: ClassVar[dict[str, BaseException]] = {}

    def __init__(self, sweep_dir: Path) -> None:
        self.sweep_dir = str(sweep_dir)

    def _note(self, trial: Any) -> None:
        try:  # Tune's copy of the error, on the driver's disk (the sweep's own may be the full one)
            with open(trial.pickled_error_file, "rb") as f:
                error = pickle.load(f)
        except Exception:  # no pickled error (not a task's), or unreadable: Tune goes on as it would
            return
        if every_task_fails(error):
            self.failures.setdefault(self.sweep_dir, error)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._note(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._note(trial)

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False  # no one trial is stopped for its results

    def stop_all(self) -> bool:
        return self.sweep_dir in self.failures


def _parent_run(sweep: SweepJob, experiment_dir: Path) -> tuple[str, str]:
    """(run id, tracking URI) of the sweep's MLflow parent run, opened (or, on restore, re-opened)."""
    uri = sweep.base.tracking_uri or default_tracking_uri()
    record = experiment_dir / PARENT_FILE
    if sweep.resume and record.is_file():
        try:
            return json.loads(record.read_text())["run_id"], uri
        except (ValueError, KeyError, TypeError) as err:  # edited, or written by hand: a traceback before
            raise UserError(f"{record}: damaged ({type(err).__name__}: {err}), the record of the MLflow parent run "
                            "this --resume goes on with: put it back, or start a sweep of another --name") from None
    tracker = Tracker(tracking_uri=uri, experiment=sweep.base.experiment, run_name=sweep.name,
                      tags={"kind": "sweep", "config": sweep.base.config, "space": sweep.space.source})
    with tracker.ended_if_raises():  # a full disk here: the parent run ends FAILED, not left RUNNING
        tracker.log_params({"space": json.dumps(sweep.space.params), "metric": sweep.space.metric,
                            "mode": sweep.space.mode, "num_samples": sweep.num_samples or sweep.space.num_samples})
        experiment_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(record, "w") as f:  # whole or not at all: a restore reads it
            f.write(json.dumps({"run_id": tracker.run_id, "tracking_uri": uri}))
    return tracker.run_id, uri


def run_sweep(sweep: SweepJob) -> SweepResult:
    """Run (or restore) the sweep; log the best trial to the parent run and export its config. One process at a
    time runs a sweep of a name (training.job.run_lock)."""
    with run_lock(dataclasses.replace(sweep.base, name=sweep.name)):
        return _run_sweep(sweep)


def _run_sweep(sweep: SweepJob) -> SweepResult:
    from training.trainer import DATA_CPUS, cpus_per_run, ensure_training_ray

    base = sweep.base
    sweep.space.check_against(base.load_config())
    ensure_training_ray(base)
    # concurrent trials short of CPUs would split the spare ones between their data pipelines, each waiting forever
    each, cpus = cpus_per_run(base), ray.cluster_resources().get("CPU", 0)
    if sweep.max_concurrent > 1 and sweep.max_concurrent * each > cpus:
        raise UserError(f"--max-concurrent {sweep.max_concurrent}: each trial takes {each:g} CPUs ({base.workers} "
                        f"worker(s) × {base.cpus_per_worker:g} and {DATA_CPUS} for its data), "
                        f"{sweep.max_concurrent * each:g} at once; the Ray cluster has {cpus:g} CPUs, and trials "
                        f"short of CPUs for their data would wait forever")
    experiment_dir = Path(base.storage).resolve() / sweep.name
    parent_run_id, uri = _parent_run(sweep, experiment_dir)
    # each trial writes under <storage>/<sweep>/trials from its own working directory: hand it absolute paths
    data = base.data if storage.is_remote(base.data) else str(Path(base.data).resolve())
    trial_base = dataclasses.replace(base, storage=str(experiment_dir / "trials"), tracking_uri=uri, name=None,
                                     config=str(Path(base.config).resolve()), data=data)
    trainable = tune.with_resources(train_trial, {"CPU": 0.01})  # the driver only waits; workers hold the CPUs
    if sweep.resume and tune.Tuner.can_restore(str(experiment_dir / "tune")):
        tuner = tune.Tuner.restore(str(experiment_dir / "tune"), trainable=trainable, resume_errored=True,
                                   restart_errored=False)
    else:
        stop = StopWhereTrialsFail(experiment_dir)
        param_space = {**sweep.space.param_space(), "__base_job": dataclasses.asdict(trial_base),
                       "__parent_run_id": parent_run_id, "__experiment": base.experiment}
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=sweep.max_reports,
                                  grace_period=sweep.grace_period, reduction_factor=sweep.reduction_factor)
        tuner = tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune.TuneConfig(metric=sweep.space.metric, mode=sweep.space.mode, scheduler=scheduler,
                                        num_samples=sweep.num_samples or sweep.space.num_samples,
                                        max_concurrent_trials=sweep.max_concurrent),
            run_config=tune.RunConfig(name="tune", storage_path=str(experiment_dir), stop=stop,
                                      failure_config=tune.FailureConfig(max_failures=1),
                                      callbacks=[EndTrialRuns(uri, base.experiment, parent_run_id), stop]))
    interrupted = False
    try:
        grid, interrupted = _fit_noting_ctrl_c(tuner)
        if shared := StopWhereTrialsFail.failures.pop(str(experiment_dir), None):
            raise shared
        if interrupted:  # an unfinished sweep has no best config: exit 130 as any Ctrl-C'd stage
            raise KeyboardInterrupt
        return _finish_sweep(sweep, grid, parent_run_id, uri, experiment_dir)
    except BaseException as exc:
        Tracker(tracking_uri=uri, run_id=parent_run_id).end("KILLED" if interrupted else end_status(exc),
                                                            reason=end_reason(exc))
        raise
    finally:  # whatever ended the sweep, no trial of it runs any more
        try:
            end_open_runs(uri, base.experiment, "KILLED", f"tags.mlflow.parentRunId = '{parent_run_id}'",
                          reason="the sweep ended before the trial")
        except Exception as exc:  # a tracking outage must not turn a finished sweep into a failed one
            if not is_transient(exc):
                raise
            logging.getLogger(__name__).warning("%s: could not close the sweep's open trial runs (%s)", uri, exc)


def _fit_noting_ctrl_c(tuner: tune.Tuner) -> tuple[Any, bool]:
    """`tuner.fit()`, and whether Ctrl-C ended it: Tune's handler stops the trials and returns normally after putting
    back the SIGINT handler it found, so a sentinel handler found back in place means that it fired."""
    if threading.current_thread() is not threading.main_thread() or os.environ.get("TUNE_DISABLE_SIGINT_HANDLER"):
        return tuner.fit(), False  # no Tune handler: Ctrl-C raises KeyboardInterrupt through fit()

    def sentinel(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, sentinel)
    try:
        grid = tuner.fit()
        return grid, signal.getsignal(signal.SIGINT) is sentinel
    finally:
        signal.signal(signal.SIGINT, previous)


def _finish_sweep(sweep: SweepJob, grid: Any, parent_run_id: str, uri: str, experiment_dir: Path) -> SweepResult:
    """Export the best trial's config and log it to the parent run, which ends FINISHED; a UserError when no trial
    reported the metric (every one failed: Tune's own error was a traceback)."""
    if not any(sweep.space.metric in (result.metrics or {}) for result in grid):
        first = f": the first, {why(grid.errors[0])}" if grid.errors else ""
        raise UserError(f"no trial of the {len(grid)} reported {sweep.space.metric} ({len(grid.errors)} failed"
                        f"{first}); each trial's error is under {experiment_dir / 'tune'}")
    best = grid.get_best_result(metric=sweep.space.metric, mode=sweep.space.mode, scope="all")
    sample = {k: v for k, v in best.config.items() if not k.startswith("__")}
    out = Path(sweep.out) if sweep.out else experiment_dir / "best.yaml"
    export_best_config(sweep.base, sample, out)
    best_value = (best.metrics or {}).get(sweep.space.metric)
    tracker = Tracker(tracking_uri=uri, run_id=parent_run_id)
    if best_value is not None:
        tracker.log_metrics({f"best_{sweep.space.metric}": float(best_value)})
    # MLflow names may not hold ',': tied keys are logged joined by ' '
    tracker.log_params({f"best.{k.replace(',', ' ')}": v for k, v in sample.items()})
    tracker.log_artifact(out)
    tracker.end("FINISHED")
    return SweepResult(str(out), dict(best.metrics or {}), sample, parent_run_id, str(experiment_dir / "tune"),
                       len(grid))
