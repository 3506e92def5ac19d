"""Search spaces: YAML → Tune distributions → nested overrides → a typed config; errors name the file."""

import pytest
from ray.tune.search.sample import Categorical, Float

from fomm.config.schema import load_config
from training.job import TrainJob
from tuning.spaces import SearchSpace, SpaceError, apply, to_overrides
from tuning.sweep import export_best_config


def test_shipped_space_parses_and_fits_vox(repo_root):
    space = SearchSpace.from_yaml(repo_root / "configs" / "sweeps" / "loss-weights.yaml")
    assert space.metric == "val_l1" and space.mode == "min"
    space.check_against(load_config(repo_root / "configs" / "vox-256.yaml"))
    ps = space.param_space()
    assert isinstance(ps["train_params.loss_weights.perceptual"], Categorical)
    lr = ps["train_params.lr_generator,train_params.lr_kp_detector,train_params.lr_discriminator"]
    assert isinstance(lr, Float) and lr.lower == pytest.approx(5e-5)


def test_a_range_written_as_people_write_learning_rates_is_read_as_numbers(tmp_path, tiny_config_path):
    """`loguniform: [1e-5, 1e-3]`: PyYAML (YAML 1.1) read 1e-5 as a string, and the space was refused ("takes two
    finite numbers, got ['1e-5', '1e-3']")."""
    path = tmp_path / "lr.yaml"
    path.write_text("metric: val_l1\nmode: min\nspace:\n  train_params.lr_generator: {loguniform: [1e-5, 1E-3]}\n"
                    "  train_params.loss_weights.equivariance_value: {uniform: [1.0e1, 2e1]}\n")
    space = SearchSpace.from_yaml(path)
    space.check_against(load_config(tiny_config_path))
    ps = space.param_space()
    assert (ps["train_params.lr_generator"].lower, ps["train_params.lr_generator"].upper) == (1e-5, 1e-3)
    assert ps["train_params.loss_weights.equivariance_value"].upper == 20.0


def test_joined_keys_share_one_value_and_config_is_typed(tiny_config_path):
    sample = {"train_params.lr_generator,train_params.lr_kp_detector": 1e-3,
              "train_params.loss_weights.perceptual": [1, 2, 3, 4, 5]}
    assert to_overrides(sample) == {"train_params.lr_generator": 1e-3, "train_params.lr_kp_detector": 1e-3,
                                    "train_params.loss_weights.perceptual": [1, 2, 3, 4, 5]}
    cfg = apply(load_config(tiny_config_path), sample)
    assert cfg.train_params.lr_kp_detector == 1e-3 and cfg.train_params.loss_weights.perceptual == (1, 2, 3, 4, 5)
    assert cfg.train_params.lr_discriminator == 2e-4  # untouched


def test_bad_spaces_name_the_file_and_key(tmp_path, tiny_config_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("space:\n  train_params.lr_generator:\n    lognormal: [1, 2]\n")
    with pytest.raises(SpaceError, match="bad.yaml: space.train_params.lr_generator: expected one of"):
        SearchSpace.from_yaml(bad)
    typo = SearchSpace.from_dict({"space": {"train_params.loss_weight.gan": {"choice": [0, 1]}}}, source="t.yaml")
    with pytest.raises(SpaceError, match=r"^t.yaml: space key 'train_params.loss_weight.gan' is not in the config "
                                         r"\(did you mean train_params.loss_weights.generator_gan\?\)$"):
        typo.check_against(load_config(tiny_config_path))
    typo = SearchSpace.from_dict({"space": {"train_params.loss_weights.equivarience_value": {"grid": [1, 10]}}},
                                 source="t.yaml")  # a misspelling: named as --set and a config's keys are
    with pytest.raises(SpaceError, match=r"^t.yaml: space key 'train_params.loss_weights.equivarience_value' is not "
                                         r"in the config \(did you mean train_params.loss_weights.equivariance_value\?\)$"):
        typo.check_against(load_config(tiny_config_path))
    space = {"space": {"train_params.lr_generator": {"uniform": [1e-4, 1e-3]}}}
    for metric in ("val_l2", 1):  # Tune failed the first trial on it, with a traceback, 40 s into the sweep
        with pytest.raises(SpaceError, match=rf"^t.yaml: metric {metric!r}: a trial reports val_l1 in every result"):
            SearchSpace.from_dict({**space, "metric": metric}, source="t.yaml")
    assert SearchSpace.from_dict({**space, "metric": "val_l1", "mode": "min"}, source="t.yaml").metric == "val_l1"


@pytest.mark.parametrize(("spec", "problem"), [
    ({"uniform": [-1.0, 10.0]}, r"the value -1.0 of its uniform makes a config that does not load or train \(.*"
                                r"equivariance_value must be ≥ 0, got -1.0\)"),
    ({"choice": [1, "ten"]}, r"the value 'ten' of its choice .*equivariance_value: expected float, got 'ten'"),
    ({"grid": [[1, 2]]}, r"the value \[1, 2\] of its grid .*expected float, got \[1, 2\]"),
])
def test_a_value_the_space_can_sample_that_the_config_refuses_fails_before_any_trial(tiny_config_path, spec,
                                                                                      problem):
    """Each choice and each end of a range is tried on the config: the trials would each fail inside Ray."""
    key = "train_params.loss_weights.equivariance_value"
    space = SearchSpace.from_dict({"space": {key: spec}}, source="s.yaml")
    with pytest.raises(SpaceError, match=rf"^s.yaml: space.{key}: {problem}"):
        space.check_against(load_config(tiny_config_path))
    SearchSpace.from_dict({"space": {key: {"uniform": [0.0, 10.0]}}}).check_against(load_config(tiny_config_path))


@pytest.mark.parametrize(("space", "problem"), [
    ({"num_samples": "all"}, "num_samples must be a whole number ≥ 1, got 'all'"),
    ({"num_samples": 0}, "num_samples must be a whole number ≥ 1, got 0"),
    ({"num_samples": 2.5}, "num_samples must be a whole number ≥ 1, got 2.5"),
    ({"metric": ["val_l1"]}, r"metric \['val_l1'\]: a trial reports val_l1 in every result"),
    ({"space": {"k": {"loguniform": [0, 1e-3]}}}, r"space.k: loguniform needs 0 < low \(a log scale\)"),
    ({"space": {"k": {"uniform": [1, 1]}}}, "space.k: uniform needs low < high"),
    ({"space": {"k": {"uniform": [0, float("nan")]}}}, r"space.k: uniform takes two finite numbers \[low, high\]"),
    ({"space": {"k": {"randint": [0, 2.5]}}}, "space.k: randint takes two whole numbers"),
    ({"space": {"k": {"choice": []}}}, "space.k: choice takes a non-empty list of values"),
    ({"space": [1, 2]}, "'space' must map config keys to distributions"),
    # a model config given as --space (the two swapped) was "unknown key 'animate_params'"
    ({"model_params": {}, "train_params": {}}, r"a model config, not a search space \(a YAML of space, metric, mode"),
    # YAML aliases make a value of billions of items in a few bytes: it was shown whole, now cut to a line
    ({"mode": [[[[0] * 9] * 9] * 9] * 9}, r"mode must be min or max, got \[\[\[\.\.\.\], \[\.\.\.\], .{0,160}$"),
    # the metric is an error: ranked by max, ASHA kept the worst trials and the sweep wrote the worst config
    ({"space": {"train_params.lr_generator": {"choice": [1e-4]}, "train_params.lr_kp_detector,"
                "train_params.lr_generator": {"choice": [[1e-4, 2e-4]]}}},
     r"space.train_params.lr_kp_detector,train_params.lr_generator: train_params.lr_generator is sampled by another "
     r"key too"),
    ({"mode": "max"}, r"mode max: val_l1 is an error, lower is better \(the sweep would keep its worst trial\)"),
])
def test_a_space_tune_cannot_sample_is_refused_before_any_trial(space, problem):
    data = {"space": {"train_params.lr_generator": {"choice": [1e-4]}}, **space}
    with pytest.raises(SpaceError, match=f"^s.yaml: {problem}"):
        SearchSpace.from_dict(data, source="s.yaml")


def test_exported_best_config_loads_as_a_training_config(tmp_path, tiny_config_path):
    base = TrainJob(config=str(tiny_config_path), data="d", storage="s", num_epochs=9,
                    overrides={"train_params": {"num_epochs": 7}})
    out = export_best_config(base, {"train_params.loss_weights.equivariance_value": 3.5}, tmp_path / "best.yaml")
    cfg = load_config(out)
    assert cfg.train_params.loss_weights.equivariance_value == 3.5 and cfg.train_params.num_epochs == 7
    assert cfg.model_params == load_config(tiny_config_path).model_params


def test_the_space_is_checked_as_tune_samples_it_every_mix_of_its_ends(tiny_config_path):
    """Tune draws each key on its own. A 32×32 frame trains at scales [1, 0.5] (16 pixels: VGG-19's relu5_1 needs
    16) but not at the base's [1, 0.5, 0.25]: swept together, only the mix of the small frame with the base
    scales fails, and it is named; each key against the base alone would have refused the frame."""
    cfg = load_config(tiny_config_path)  # scales [1, 0.5, 0.25], perceptual up to relu5_1
    frame, scales = "dataset_params.frame_shape", "train_params.scales"
    SearchSpace.from_dict({"space": {frame: {"choice": [[32, 32, 3], [64, 64, 3]]},
                                     scales: {"choice": [[1, 0.5], [1]]}}}, source="s.yaml").check_against(cfg)
    mixed = SearchSpace.from_dict({"space": {frame: {"choice": [[32, 32, 3], [64, 64, 3]]},
                                             scales: {"choice": [[1, 0.5], [1, 0.5, 0.25]]}}}, source="s.yaml")
    with pytest.raises(SpaceError, match=r"^s.yaml: the sample \{'dataset_params.frame_shape': \[32, 32, 3\], "
                                         r"'train_params.scales': \[1, 0.5, 0.25\]\} \(values at the ends of the "
                                         r"space\) makes a config that does not load or train \(sweep sample: "
                                         r"train_params: a 32×32 frame at scale 0.25 is 8 pixels across"):
        mixed.check_against(cfg)


def test_a_bad_value_is_found_however_many_mixes_the_space_has(tiny_config_path):
    """13 keys of two values: 8,192 mixes, past the MAX_SAMPLES_CHECKED tried. The bad learning rate, the first
    key's second value, sat in none of the first 4,096: a trial failed in Tune and the sweep exited 0."""
    from tuning.spaces import MAX_SAMPLES_CHECKED

    weights = ("equivariance_value", "equivariance_jacobian", "generator_gan", "discriminator_gan",
               "keypoint_separation")
    space = {"train_params.lr_generator": {"grid": [2.0e-4, -1.0]},
             **{f"train_params.loss_weights.{w}": {"choice": [1, 2]} for w in weights},
             **{f"train_params.transform_params.{t}": {"choice": [0.01, 0.02]} for t in ("sigma_affine", "sigma_tps")},
             **{f"dataset_params.augmentation_params.jitter_param.{j}": {"choice": [0.1, 0.2]}
                for j in ("brightness", "contrast", "saturation", "hue")},
             "train_params.lr_kp_detector": {"choice": [1e-4, 2e-4]}}
    assert len(space) == 13 and 2 ** 13 == 2 * MAX_SAMPLES_CHECKED  # lr_generator: first in the mixes, slowest
    with pytest.raises(SpaceError, match=r"makes a config that does not load or train \(.*lr_generator must be ≥ 0"):
        SearchSpace.from_dict({"space": space}, source="s.yaml").check_against(load_config(tiny_config_path))


def test_a_range_over_an_integer_key_is_refused_as_tune_would_sample_it(tiny_config_path):
    """uniform [1, 3] over num_epochs passed the check (its ends, as written, are whole numbers), then every trial
    failed on a sampled 1.24. The ends are checked as Tune samples a range: real numbers. randint is the way."""
    cfg = load_config(tiny_config_path)
    for kind in ("uniform", "loguniform"):
        space = SearchSpace.from_dict({"space": {"train_params.num_epochs": {kind: [1, 3]}}}, source="s.yaml")
        with pytest.raises(SpaceError, match=rf"^s.yaml: space.train_params.num_epochs: the value 1.0 of its {kind} "
                                             r"makes a config that does not load or train \(.*expected int, got 1.0\)"):
            space.check_against(cfg)
    SearchSpace.from_dict({"space": {"train_params.num_epochs": {"randint": [1, 3]}}}).check_against(cfg)
    SearchSpace.from_dict({"space": {"train_params.lr_generator": {"uniform": [1, 2]}}}).check_against(cfg)


def test_a_damaged_parent_run_record_of_a_resumed_sweep_is_one_line(tmp_path):
    """`tune --resume` reads the MLflow parent run's id from the sweep's folder: an empty or edited record was a
    JSONDecodeError traceback (it was also written in place: a crash could leave it empty; it is atomic now)."""
    from services.errors import UserError
    from tuning.options import SweepJob
    from tuning.sweep import PARENT_FILE, _parent_run

    sweep = SweepJob(base=TrainJob(config="c.yaml", data="d", storage=str(tmp_path)),
                     space=SearchSpace({"a.b": ("choice", [1])}), resume=True)
    for text in ("", '{"run": 1}'):
        (tmp_path / PARENT_FILE).write_text(text)
        with pytest.raises(UserError, match=rf"^{tmp_path / PARENT_FILE}: damaged \(\w+Error: .*\), the record of the "
                                            r"MLflow parent run this --resume goes on with"):
            _parent_run(sweep, tmp_path)
