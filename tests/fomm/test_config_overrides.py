"""The one override mechanism: dotted or nested keys, merge vs replace, unknown keys, values typed by the loader."""

import pytest

from fomm.config.loader import ConfigError
from fomm.config.overrides import apply_overrides, parse_assignments
from fomm.config.schema import FommConfig, load_config

BASE = {"train_params": {"lr": 1.0, "scales": [1, 0.5], "loss": {"gan": 0.0, "vgg": [10, 10]}},
        "dataset_params": {"flip": None, "root": "d"}}


def test_dotted_and_nested_keys_are_the_same_override():
    dotted = apply_overrides(BASE, {"train_params.loss.gan": 1.0, "train_params.lr": 2e-4})
    nested = apply_overrides(BASE, {"train_params": {"loss": {"gan": 1.0}, "lr": 2e-4}})
    mixed = apply_overrides(BASE, {"train_params": {"loss.gan": 1.0}, "train_params.lr": 2e-4})
    expected = {"train_params": {"lr": 2e-4, "scales": [1, 0.5], "loss": {"gan": 1.0, "vgg": [10, 10]}},
                "dataset_params": {"flip": None, "root": "d"}}
    assert dotted == nested == mixed == expected
    assert BASE["train_params"]["lr"] == 1.0  # the input is not changed


def test_mappings_merge_everything_else_replaces_and_later_keys_win():
    out = apply_overrides(BASE, {"train_params.scales": [1], "dataset_params.flip": {"horizontal": True},
                                 "train_params": {"loss": {"vgg": [1, 2]}}, "train_params.loss.vgg": [3]})
    assert out["train_params"]["scales"] == [1]  # a list is replaced whole, not merged
    assert out["dataset_params"]["flip"] == {"horizontal": True}  # a section the config left out is set whole
    assert out["train_params"]["loss"] == {"gan": 0.0, "vgg": [3]}


@pytest.mark.parametrize(("override", "path"), [
    ({"train_params.lrr": 1}, "train_params.lrr"),
    ({"train_params": {"loss": {"ganz": 1}}}, "train_params.loss.ganz"),
    ({"model_params.x": 1}, "model_params"),
    ({"train_params.lr.value": 1}, "train_params.lr.value"),  # below a number: no such key
])
def test_unknown_keys_name_their_dotted_path(override, path):
    with pytest.raises(ConfigError, match=f"^override '{path}': no such key in the config"):
        apply_overrides(BASE, override)


def test_assignments_read_values_as_the_config_yaml_does_else_text():
    """JSON, and what a config file holds (False, .0002, 2.e-4 were refused as text: "expected bool, got 'False'")."""
    items = ["a.b=2e-4", "a.c=[10,10,0]", "a.d=true", "a.e=null", "a.f=vox", 'a.g="7"', "a.h=x=y", "a.i=False",
             "a.j=.0002", "a.k=2.e-4", "a.l=[1, 0.5]", "a.m=", "a.n=[1, 2", "a.o={x: 1}"]
    assert parse_assignments(items) == {"a.b": 2e-4, "a.c": [10, 10, 0], "a.d": True, "a.e": None, "a.f": "vox",
                                        "a.g": "7", "a.h": "x=y", "a.i": False, "a.j": 2e-4, "a.k": 2e-4,
                                        "a.l": [1, 0.5], "a.m": "", "a.n": "[1, 2", "a.o": {"x": 1}}
    for bad in ("train_params.lr", "=1"):
        with pytest.raises(ConfigError, match=f"^--set '{bad}': expected KEY=VALUE"):
            parse_assignments([bad])


def test_the_loader_types_the_overridden_config(tiny_config_path):
    data = load_config(tiny_config_path).to_dict()
    overrides = parse_assignments(["train_params.lr_generator=1e-3", "train_params.scales=[1,0.5]",
                                   "train_params.batch_size=3"])
    cfg = FommConfig.from_dict(apply_overrides(data, overrides), where="t:")
    assert cfg.train_params.lr_generator == 1e-3 and cfg.train_params.scales == (1, 0.5)
    bad = apply_overrides(data, parse_assignments(["train_params.batch_size=abc"]))
    with pytest.raises(ConfigError, match="^t: train_params.batch_size: expected int, got 'abc'"):
        FommConfig.from_dict(bad, where="t:")
