"""The YAML → dataclass loader: wrong types are ConfigErrors naming the key path and the expected type."""

from dataclasses import field

import pytest

from fomm.config.loader import ConfigError, Section, build, parse_yaml, section
from fomm.config.schema import load_config


@section
class Inner(Section):
    rate: float = 1.0
    sizes: tuple[int, ...] = (1, 2)


@section
class Outer(Section):
    name: str = "x"
    count: int | None = None
    flag: bool | str = "auto"
    inner: Inner = field(default_factory=Inner)


def test_values_of_the_right_type_load_and_the_stated_coercions_hold():
    cfg = build(Outer, {"name": "a", "count": 3, "flag": True, "inner": {"rate": 2, "sizes": [4, 5]}}, "t.yaml:")
    assert cfg == Outer(name="a", count=3, flag=True, inner=Inner(rate=2, sizes=(4, 5)))
    assert type(cfg.inner.rate) is int and cfg.inner.sizes == (4, 5)  # int kept where a float is asked; list → tuple
    assert build(Outer, {"count": None, "flag": "auto"}, "t.yaml:").count is None


@pytest.mark.parametrize(("data", "message"), [
    ({"count": "3"}, "t.yaml: count: expected int or null, got '3'"),
    ({"count": 2.5}, "t.yaml: count: expected int or null, got 2.5"),
    ({"count": True}, "t.yaml: count: expected int or null, got True"),  # a bool is not an int here
    ({"name": 7}, "t.yaml: name: expected str, got 7"),
    ({"flag": 1}, "t.yaml: flag: expected bool or str, got 1"),
    ({"inner": {"rate": "fast"}}, "t.yaml: inner.rate: expected float, got 'fast'"),
    ({"inner": {"sizes": [1, 2.5]}}, r"t.yaml: inner.sizes: expected a list of int, got \[1, 2.5\]"),
    ({"inner": {"sizes": 3}}, "t.yaml: inner.sizes: expected a list of int, got 3"),
    ({"inner": [1]}, r"t.yaml: inner: expected Inner, got \[1\]"),
    ({"inner": {"rte": 1}}, "t.yaml: inner: unknown key 'rte'"),
    ({"rte": 1}, "t.yaml: unknown key 'rte'"),  # at the top: the file's name once, one colon
    ([1], r"t.yaml: expected a mapping, got list"),
    ({"inner": {"rate": float("nan")}}, "t.yaml: inner.rate: expected finite numbers, got nan"),
    ({"inner": {"rate": float("-inf")}}, "t.yaml: inner.rate: expected finite numbers, got -inf"),
])
def test_wrong_values_name_the_key_path_and_expected_type(data, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        build(Outer, data, "t.yaml:")


def test_a_wrong_type_in_a_real_config_file_names_file_and_path(tmp_path):
    path = tmp_path / "vox.yaml"
    path.write_text("train_params:\n  batch_size: '40'\n  scales: [1, 0.5]\n")
    with pytest.raises(ConfigError, match="^vox.yaml: train_params.batch_size: expected int, got '40'"):
        load_config(path)


def test_positive_fields_are_checked():
    @section
    class Pos(Section):
        size: int = 1
        positive = ("size",)

    assert Pos(size=2).size == 2
    with pytest.raises(ConfigError, match="^p: size must be positive, got 0"):
        build(Pos, {"size": 0}, "p")


def test_non_negative_fields_take_zero_and_refuse_any_negative_number_of_a_list():
    @section
    class NonNeg(Section):
        rate: float = 1.0
        weights: tuple[float, ...] = (1.0,)
        non_negative = ("rate", "weights")

    assert build(NonNeg, {"rate": 0, "weights": [0, 2]}, "n").weights == (0, 2)  # 0: a network or a loss left out
    with pytest.raises(ConfigError, match=r"^n: weights must be ≥ 0, got \[1, -0.5\]"):
        build(NonNeg, {"weights": [1, -0.5]}, "n")


@pytest.mark.parametrize(("text", "message"), [
    (b"", "empty config"),
    (b"{}\n", "empty config"),
    (b"PK\x03\x04\x80\xff\x00 a checkpoint", r"a PyTorch checkpoint, not a YAML config \(a checkpoint goes to "
                                            r"--checkpoint\)"),  # --config and --checkpoint swapped
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not a UTF-8 text config"),
    (b"dataset_params:\n  frame_shape: [64]\n", r"frame_shape must be \[H, W\] or \[H, W, C\]"),
    # a grey (C 1) or RGBA (C 4) frame_shape trained on RGB frames without a word
    (b"dataset_params:\n  frame_shape: [256, 256, 1]\n", r"frame_shape: C must be 3 \(frames are read as RGB\), "
                                                         r"got \[256, 256, 1\]"),
    (b"train_params:\n  num_epochs: -1\n", "num_epochs must be positive, got -1"),
    (b"train_params:\n  scales: []\n", r"scales must list the pyramid's scales, each in \(0, 1\], got \[\]"),
    # the pyramid only shrinks (a scale of 2 made a gaussian of negative size: a traceback inside torch)
    (b"train_params:\n  scales: [1, 2]\n", r"train_params: scales must be in \(0, 1\] \(a downscale of the frame\), "
                                            r"got \[1, 2\]"),
    (b"model_params:\n  kp_detector_params:\n    scale_factor: 2\n",
     r"model_params.kp_detector_params: scale_factor must be in \(0, 1\]"),
    # sizes the networks cannot take: the hourglass's skips or the generator's decoder would not match the frame
    (b"dataset_params:\n  frame_shape: [60, 60, 3]\n",  # defaults: scale_factor 0.25, num_blocks 5 → 15 is no ×32
     r"^c.yaml: model_params.kp_detector_params: a 60×60 frame \(dataset_params.frame_shape\) at scale_factor 0.25 "
     r"is 15×15, not a multiple of 2\*\*num_blocks = 32 in both sides"),
    (b"dataset_params:\n  frame_shape: [256, 250, 3]\nmodel_params:\n  kp_detector_params:\n    num_blocks: 1\n"
     b"    scale_factor: 1\n  generator_params:\n    dense_motion_params:\n      num_blocks: 1\n"
     b"      scale_factor: 1\n",  # 250: a multiple of 2 (the hourglasses) but not of 4 (num_down_blocks 2)
     r"^c.yaml: model_params.generator_params: a 256×250 frame \(dataset_params.frame_shape\) is not a multiple of "
     r"2\*\*num_down_blocks = 4 in both sides$"),
    (b"model_params:\n  common_params:\n    num_channels: 4\n", r"num_channels must be 3 \(frames are read as RGB\)"),
    # widths and sizes each network needs (tests/fomm/test_model_shapes.py holds the rules against the networks):
    # before, the config loaded and the first forward pass ended in a traceback from inside torch
    (b"model_params:\n  kp_detector_params:\n    block_expansion: 2048\n",
     r"^c.yaml: model_params: kp_detector_params: block_expansion 2048 is above max_features 1024 \(the widths"),
    (b"dataset_params:\n  frame_shape: [16, 16, 3]\nmodel_params:\n  kp_detector_params:\n    num_blocks: 2\n"
     b"  generator_params:\n    dense_motion_params:\n      num_blocks: 2\n",
     r"^c.yaml: model_params.kp_detector_params: a 16×16 frame \(dataset_params.frame_shape\) at scale_factor 0.25 "
     r"is 4 pixels across, too small for the 7×7 keypoint head with pad 0"),
    (b"model_params:\n  common_params:\n    num_kp: 10\n  common_params:\n    num_kp: 5\n",
     r"^.*c.yaml: line 4: key 'common_params' given twice in one mapping \(YAML would keep only the later one\)$"),
    (b"train_params:\n  ? [a, b]\n  : 1\n",  # a complex key: 'unhashable type: list' (a traceback)
     r"^.*c.yaml: line 2: a list as a key \(keys are names\)$"),
    (b"train_params:\n  lr_generator: .nan\n", "train_params.lr_generator: expected finite numbers"),
    # a negative rate or weight climbs its loss: the run fails inside Ray's workers, or trains the wrong way
    (b"train_params:\n  lr_kp_detector: -2.0e-4\n", "train_params: lr_kp_detector must be ≥ 0, got -0.0002"),
    (b"train_params:\n  loss_weights:\n    perceptual: [10, 10, -1, 10, 10]\n",
     r"train_params.loss_weights: perceptual must be ≥ 0, got \[10, 10, -1, 10, 10\]"),
    (b"train_params:\n  transform_params:\n    sigma_affine: -0.05\n",
     "train_params.transform_params: sigma_affine must be ≥ 0, got -0.05"),
    # sizes and counts the networks cannot be built with: a traceback inside a Ray worker, 30 s into the run
    (b"model_params:\n  generator_params:\n    block_expansion: 0\n",
     "model_params.generator_params: block_expansion must be positive, got 0"),
    (b"model_params:\n  generator_params:\n    num_bottleneck_blocks: -1\n", "num_bottleneck_blocks must be ≥ 0"),
    (b"model_params:\n  discriminator_params:\n    max_features: -2\n", "max_features must be positive, got -2"),
    (b"model_params:\n  discriminator_params:\n    kp_variance: 0\n", "kp_variance must be positive, got 0"),
    (b"model_params:\n  kp_detector_params:\n    pad: -3\n", "pad must be ≥ 0, got -3"),
    (b"train_params:\n  transform_params:\n    points_tps: -1\n", "points_tps must be ≥ 0, got -1"),
    # a schedule that silently meant something else: every epoch, every step, from the start
    (b"train_params:\n  checkpoint_freq: 0\n", "checkpoint_freq must be positive, got 0"),
    (b"train_params:\n  checkpoint_every_steps: -1\n", "checkpoint_every_steps must be ≥ 0, got -1"),
    (b"train_params:\n  epoch_milestones: [-5]\n", r"epoch_milestones must be ≥ 0, got \[-5\]"),
    (b"dataset_params:\n  augmentation_params:\n    crop_param:\n      size: [0, 0]\n",
     r"crop_param: size must be positive, got \[0, 0\]"),
    # a discriminator of no scale has no parameter: its optimiser failed in every worker, 4 restarts over
    (b"model_params:\n  discriminator_params:\n    scales: []\n",
     r"model_params.discriminator_params: scales must list the pyramid's scales, each in \(0, 1\], got \[\]"),
    # a factor drawn in [1 − v, 1 + v]: a negative strength failed in Ray Data's tasks ("high - low < 0"), 10 tracebacks
    (b"dataset_params:\n  augmentation_params:\n    jitter_param:\n      brightness: -1\n",
     r"augmentation_params.jitter_param: brightness must be ≥ 0, got -1"),
    # whole numbers past what C and the networks take: 2**num_down_blocks never ended (the check hung), a huge
    # num_kp was a traceback inside torch, a huge num_repeats one in Ray Data's tasks, 4 restarts over
    (b"model_params:\n  generator_params:\n    num_down_blocks: 100000000000000000000\n",
     "model_params.generator_params: num_down_blocks must be at most 16, got 100000000000000000000"),
    (b"model_params:\n  kp_detector_params:\n    num_blocks: 17\n",
     "model_params.kp_detector_params: num_blocks must be at most 16, got 17"),
    (b"model_params:\n  generator_params:\n    num_bottleneck_blocks: 5000\n", "num_bottleneck_blocks must be at most 1024"),
    (b"model_params:\n  common_params:\n    num_kp: 100000000000000000000\n",
     "model_params.common_params: num_kp must be at most 2147483647, got 100000000000000000000"),
    (b"train_params:\n  num_repeats: 2147483648\n", "train_params: num_repeats must be at most 2147483647"),
    (b"dataset_params:\n  frame_shape: [64, 99999999999, 3]\n",
     r"dataset_params: frame_shape must be at most 2147483647, got \[64, 99999999999, 3\]"),
    (b"train_params:\n  seed: -3\n", "train_params: seed must be ≥ 0, got -3"),  # numpy's seeds
    (b"train_params:\n  seed: 4294967296\n", "train_params: seed must be at most 4294967295"),
    (b"animate_params:\n  num_pairs: 0\n", "animate_params: num_pairs must be positive, got 0"),
    (b"model_params:\n  common_params:\n    num_kp: " + b"9" * 5000 + b"\n",  # Python reads 4,300 digits at most
     r"c.yaml: line 3: a whole number of 5,000 digits, too long to read$"),
])
def test_a_file_that_is_no_usable_config_is_one_config_error_naming_it(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "c.yaml" in str(err.value)


def test_yaml_merge_keys_still_override_what_they_merge(tmp_path):
    """A key given again beside a merge (`<<`) is YAML's override, not a duplicate."""
    from fomm.config.loader import read_yaml

    path = tmp_path / "m.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n")
    assert read_yaml(path) == {"base": {"x": 1, "y": 2}, "d": {"x": 3, "y": 2}}


SMALL_FRAME = (b"dataset_params:\n  frame_shape: [32, 32, 3]\nmodel_params:\n  kp_detector_params:\n    num_blocks: 3\n"
               b"  generator_params:\n    dense_motion_params:\n      num_blocks: 3\n")


@pytest.mark.parametrize(("text", "message"), [
    (b"train_params:\n  loss_weights:\n    generator_gan: 1\n  scales: [1, 0.5]\nmodel_params:\n"
     b"  discriminator_params:\n    scales: [1, 0.25]\n",
     r"^c.yaml: model_params.discriminator_params: scales \[1, 0.25\] must be among train_params.scales \[1, 0.5\] "
     r".*not \[0.25\]$"),
    (SMALL_FRAME + b"train_params:\n  scales: [1]\n  loss_weights:\n    generator_gan: 1\n",
     # the default 4 blocks: 32 → 29 → 14 → 11 → 5 → 2 → 1 → a 4×4 convolution of 1
     r"^c.yaml: model_params.discriminator_params: a 32×32 frame at scale 1 is too small for 4 blocks"),
    (SMALL_FRAME + b"train_params:\n  scales: [1, 0.5, 0.25]\n",  # 8 pixels at 0.25; relu5_1 needs 16
     r"^c.yaml: train_params: a 32×32 frame at scale 0.25 is 8 pixels across, too small for the perceptual loss "
     r"up to VGG-19's relu5_1 \(it needs 16\)"),
    # the original's RandomCrop: the networks train on its window, not on frame_shape (a traceback in every worker)
    (SMALL_FRAME.replace(b"[32, 32, 3]", b"[64, 64, 3]\n  augmentation_params:\n    crop_param:\n      size: [8, 8]"),
     r"^c.yaml: model_params.kp_detector_params: a 8×8 frame \(dataset_params.augmentation_params.crop_param.size, "
     r"the frames trained on\) at scale_factor 0.25 is 2×2, not a multiple of 2\*\*num_blocks = 8"),
    (SMALL_FRAME.replace(b"[32, 32, 3]", b"[64, 64, 3]\n  augmentation_params:\n    crop_param:\n      size: [32, 32]")
     + b"train_params:\n  scales: [1, 0.5, 0.25]\n",  # fine at 64; the 32×32 crop at 0.25 is 8 pixels
     r"^c.yaml: train_params: a 32×32 frame at scale 0.25 is 8 pixels across, too small for the perceptual loss"),
    # a zoom of each pair's own and no crop to bring them back: a batch of pairs of unequal sizes (a worker's traceback)
    (b"dataset_params:\n  augmentation_params:\n    resize_param:\n      ratio: [0.9, 1.1]\n",
     r"^c.yaml: dataset_params.augmentation_params: resize_param zooms each pair by a factor of its own, so pairs "
     r"differ in size: it needs a crop_param"),
])
def test_sizes_only_a_training_step_needs_are_checked_where_training_builds_its_config(tmp_path, text, message):
    """A training run's config (TrainJob.load_config: the driver's check, the workers, a sweep's trials) is
    refused; animation, which runs no discriminator and no VGG, loads the same file."""
    from training.job import TrainJob

    path = tmp_path / "c.yaml"
    path.write_bytes(text)
    load_config(path)
    with pytest.raises(ConfigError, match=message):
        TrainJob(config=str(path), data="shards", storage="runs").load_config()


def test_a_discriminator_too_small_for_its_frame_loads_where_no_gan_term_runs_it(tmp_path):
    path = tmp_path / "c.yaml"  # the same 32×32 frame as above, generator_gan 0 (the default): never run
    path.write_text("dataset_params:\n  frame_shape: [32, 32, 3]\nmodel_params:\n  kp_detector_params:\n"
                    "    num_blocks: 3\n  generator_params:\n    dense_motion_params:\n      num_blocks: 3\n")
    assert load_config(path).model_params.discriminator_params.num_blocks == 4


def test_numbers_in_exponent_form_are_numbers_as_in_yaml_1_2_and_json(tmp_path, tiny_config_path):
    """PyYAML's YAML 1.1 wants a dot and a signed exponent (2.0e-4): `lr_generator: 2e-4` was the string '2e-4',
    refused as "expected float". What it already read, and what is no number, reads as before."""
    assert parse_yaml("[1e-5, 2E4, 1.0e5, +1e3, -2e-4, 2.0e-4, 10, 1_000, 1.5, .inf]") == [
        1e-5, 2e4, 1e5, 1e3, -2e-4, 2e-4, 10, 1000, 1.5, float("inf")]
    assert parse_yaml("[1e, e5, 1e5x, 1.2.3, '1e-5']") == ["1e", "e5", "1e5x", "1.2.3", "1e-5"]
    config = tmp_path / "lr.yaml"
    config.write_text(tiny_config_path.read_text().replace("lr_generator: 2.0e-4", "lr_generator: 2e-4"))
    assert "lr_generator: 2e-4" in config.read_text() and load_config(config).train_params.lr_generator == 2e-4


LAUGHS = "[&a [1,1,1,1,1,1,1,1,1], " + ", ".join(f"&{n} [{','.join([f'*{o}'] * 9)}]" for o, n in
                                                 zip("abcdefgh", "bcdefghi")) + "]"  # 9^9 ones in 230 bytes


def test_a_value_yaml_aliases_make_huge_is_named_in_a_line_not_printed_whole(tmp_path, tiny_config_path):
    """YAML aliases ('billion laughs') build a nested list of 9^9 numbers from a few bytes: its whole repr in the
    error line was 1.4 GB, written after 70 s with 4 GB of memory (a level more, and the machine's memory). The
    value shown is cut to a line, in a config file and in an override (`train --set`, a sweep's sample)."""
    from fomm.config.overrides import apply_overrides
    from fomm.config.schema import FommConfig

    config = tmp_path / "laughs.yaml"
    config.write_text(tiny_config_path.read_text().replace("num_kp: ", f"num_kp: {LAUGHS} #", 1))
    with pytest.raises(ConfigError, match=r"num_kp: expected int, got \[\[1, 1, 1, 1, 1, 1, \.\.\.\], \[\[") as file:
        load_config(config)
    overridden = apply_overrides(load_config(tiny_config_path).to_dict(),
                                 {"train_params.epoch_milestones": parse_yaml(LAUGHS)})
    with pytest.raises(ConfigError, match=r"epoch_milestones: expected a list of int, got \[\[1, 1,") as override:
        FommConfig.from_dict(overridden)
    assert all(len(str(refused.value)) < 250 for refused in (file, override))


def test_yaml_nested_too_deeply_for_the_parser_is_a_config_error_naming_the_file(tmp_path, tiny_config_path):
    """PyYAML recurses once per level: `[[[…]]]` 20,000 deep was a RecursionError traceback (in a config, a space,
    `--set`); a few hundred levels load and are refused by type, shown cut."""
    deep, shallow = tmp_path / "deep.yaml", tmp_path / "shallow.yaml"
    for path, levels in ((deep, 20_000), (shallow, 300)):
        path.write_text(tiny_config_path.read_text().replace("num_kp: ", f"num_kp: {'[' * levels}{']' * levels} #", 1))
    with pytest.raises(ConfigError, match=r"deep.yaml: lists or mappings nested too deeply \(hundreds of levels\)$"):
        load_config(deep)
    with pytest.raises(ConfigError, match=r"num_kp: expected int, got \[\[\[\.\.\.\]\]\]$"):
        load_config(shallow)


def test_a_file_far_too_large_for_a_config_is_refused_unread(tmp_path):
    """A video or a disk image given as --config or --space was read whole first: 3 GB took 20 s and 6 GB, then
    "not valid YAML"."""
    from fomm.config.loader import MAX_YAML_BYTES, read_yaml

    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as f:
        f.truncate(3 << 30)  # sparse: no disk used
    with pytest.raises(ConfigError, match=r"huge.yaml: 3,072 MiB, too large for a search space \(a YAML of a few KB\)$"):
        read_yaml(huge, "search space")
    with huge.open("r+b") as f:
        f.truncate(MAX_YAML_BYTES)
    with pytest.raises(ConfigError, match=r"huge.yaml: not valid YAML \(unacceptable character #x0000"):
        read_yaml(huge)


def test_a_search_space_given_as_the_model_config_says_so(repo_root):
    """--config and --space swapped: it was "unknown key 'metric'" with the model config's keys."""
    with pytest.raises(ConfigError, match=r"^loss-weights.yaml: a search space \(space, metric, mode, num_samples\), "
                                          r"not a model config"):
        load_config(repo_root / "configs" / "sweeps" / "loss-weights.yaml")
