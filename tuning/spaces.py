"""Search spaces: a YAML of dotted config keys → Ray Tune distributions → config overrides."""

from __future__ import annotations

import difflib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fomm.config.loader import ConfigError, read_yaml, shown
from fomm.config.overrides import apply_overrides
from fomm.config.schema import FommConfig
from services.cli import UserError
from services.failures import one_line
from services.tracking.redaction import flatten_config

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")
MAX_SAMPLES_CHECKED = 4096  # mixes of the ends tried before a sweep starts


TRIAL_METRICS = ("val_l1",)  # the quality metric every training report carries (the held-out L1)


class SpaceError(UserError, ValueError):
    """A search-space file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class SearchSpace:
    """Parameters to sample (dotted keys, several joined by ',' share one value) and the target metric."""

    params: dict[str, tuple[str, list]]  # key → (distribution, arguments)
    metric: str = "val_l1"
    mode: str = "min"
    num_samples: int = 4
    source: str = "<dict>"

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        return cls.from_dict(read_yaml(path, "search space") or {}, source=Path(path).name)

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> SearchSpace:
        if not isinstance(data, dict):
            raise SpaceError(f"{source}: expected a mapping with space (and metric, mode, num_samples)")
        unknown = set(data) - {"metric", "mode", "num_samples", "space"}
        if unknown & {"model_params", "train_params", "dataset_params"}:  # --config and --space swapped?
            raise SpaceError(f"{source}: a model config, not a search space (a YAML of space, metric, mode, "
                             "num_samples, e.g. configs/sweeps/loss-weights.yaml; the model config goes in --config)")
        if unknown:
            raise SpaceError(f"{source}: unknown key {sorted(unknown)[0]!r} (use metric, mode, num_samples, space)")
        params: dict[str, tuple[str, list]] = {}
        if not isinstance(data.get("space") or {}, dict):
            raise SpaceError(f"{source}: 'space' must map config keys to distributions, got {shown(data['space'])}")
        for key, spec in (data.get("space") or {}).items():
            if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
                raise SpaceError(f"{source}: space.{key}: expected one of {', '.join(DISTRIBUTIONS)} "
                                 f"with its arguments, got {shown(spec)}")
            kind, args = next(iter(spec.items()))
            if twice := next((k for k in str(key).split(",") for earlier in params if k in earlier.split(",")), None):
                raise SpaceError(f"{source}: space.{key}: {twice} is sampled by another key too (the later one "
                                 "would win silently)")
            if problem := _arguments_problem(kind, args):
                raise SpaceError(f"{source}: space.{key}: {kind} {problem}, got {shown(args)}")
            params[key] = (kind, list(args))
        if not params:
            raise SpaceError(f"{source}: 'space' is empty")
        mode = data.get("mode", "min")
        if mode not in ("min", "max"):
            raise SpaceError(f"{source}: mode must be min or max, got {shown(mode)}")
        num_samples = data.get("num_samples", 4)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise SpaceError(f"{source}: num_samples must be a whole number ≥ 1, got {shown(num_samples)}")
        metric = data.get("metric", "val_l1")
        if metric not in TRIAL_METRICS:  # Tune refuses a trial whose first result lacks it (after a trial's start)
            raise SpaceError(f"{source}: metric {shown(metric)}: a trial reports {', '.join(TRIAL_METRICS)} in every "
                             "result (training.worker), so the sweep can rank by that")
        if mode == "max":  # every metric a trial reports is an error (lower is better)
            raise SpaceError(f"{source}: mode max: {metric} is an error, lower is better (the sweep would keep its "
                             "worst trial); use min")
        return cls(params, metric, mode, num_samples, source)

    def check_against(self, cfg: FommConfig) -> None:
        """Every key must exist in the config, and every sample of values at the ends of the distributions (each
        choice, each end of a range; Tune draws each key on its own, so any mix of them) must make a config that
        loads and trains: a typo, a negative weight or a frame too small for the loss fails before any trial. First
        samples that hold every value once (however many mixes there are), then the first MAX_SAMPLES_CHECKED mixes."""
        for key in to_overrides(dict.fromkeys(self.params)):
            try:
                apply_overrides(cfg.to_dict(), {key: None})
            except ConfigError:
                near = difflib.get_close_matches(key, flatten_config(cfg.to_dict()), 1)  # a typo, most likely
                raise SpaceError(f"{self.source}: space key {key!r} is not in the config" +
                                 (f" (did you mean {near[0]}?)" if near else "")) from None
        ends = {key: args if kind in ("choice", "grid") else [args[0], args[1] - 1] if kind == "randint"
                else [float(a) for a in args]  # as Tune samples a range: a real number, never an int
                for key, (kind, args) in self.params.items()}
        widest = max(map(len, ends.values()))  # samples that hold every value once, however many mixes there are
        covering = ({key: values[i % len(values)] for key, values in ends.items()} for i in range(widest))
        mixes = (dict(zip(ends, values)) for values in itertools.islice(itertools.product(*ends.values()),
                                                                        MAX_SAMPLES_CHECKED))
        for sample in itertools.chain(covering, mixes):
            try:
                apply(cfg, sample)
            except ConfigError as err:
                if len(sample) == 1:
                    (key, value), = sample.items()
                    what = f"space.{key}: the value {shown(value)} of its {self.params[key][0]}"
                else:
                    what = f"the sample {shown(sample)} (values at the ends of the space)"
                raise SpaceError(f"{self.source}: {what} makes a config that does not load or train "
                                 f"({one_line(err)})") from None

    def param_space(self) -> dict[str, Any]:
        """Ray Tune's param_space (flat, keyed by the joined dotted names)."""
        from ray import tune  # seconds to import: reading and checking a space does without it

        lists = {"choice": tune.choice, "grid": tune.grid_search}  # the others take [low, high]
        return {key: lists[kind](args) if kind in lists
                else getattr(tune, kind)(*map(int if kind == "randint" else float, args))
                for key, (kind, args) in self.params.items()}


def _arguments_problem(kind: str, args: Any) -> str | None:
    """Why `args` cannot parametrise distribution `kind` (None: they can)."""
    if kind in ("choice", "grid"):
        return None if isinstance(args, list) and args else "takes a non-empty list of values"
    if not isinstance(args, list) or len(args) != 2:
        return "takes [low, high]"
    if not all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in args):
        return "takes two finite numbers [low, high]"
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        return "takes two whole numbers [low, high)"
    if not args[0] < args[1]:
        return "needs low < high"
    if kind == "loguniform" and args[0] <= 0:
        return "needs 0 < low (a log scale)"
    return None


def to_overrides(sample: dict[str, Any]) -> dict[str, Any]:
    """{'a.b,a.c': v} → {'a.b': v, 'a.c': v}: one dotted override per key (fomm.config.apply_overrides)."""
    return {key: list(v) if isinstance(v, tuple) else v for joined, v in sample.items() for key in joined.split(",")}


def apply(cfg: FommConfig, sample: dict[str, Any]) -> FommConfig:
    """The config with one sample applied (typed again, so bad values fail like a bad YAML), one that trains."""
    sampled = FommConfig.from_dict(apply_overrides(cfg.to_dict(), to_overrides(sample)), where="sweep sample:")
    sampled.check_trainable("sweep sample:")
    return sampled
