"""Frame-pair sampling from clip shards, without Ray: epoch composition, pair order, validation frames."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from fomm.config.schema import AugmentationParams, load_config
from preprocessing import shards
from preprocessing.shard_set import ShardSet
from training import data

NO_AUGMENT = AugmentationParams()


def _train_table(root) -> shards.pa.Table:  # noqa: F821
    return shards.read_table(str(root / "train-00000.parquet"), columns=data.READ_COLUMNS)


def test_scan_keeps_one_split_sorted_without_frames(synthetic_shards):
    train = data.clip_index(ShardSet.open(str(synthetic_shards)), "train")
    test = data.clip_index(ShardSet.open(str(synthetic_shards)), "test")
    assert train.clip_ids == tuple(f"synth{v:04d}_000" for v in (0, 1, 2, 4, 5, 6))
    assert test.clip_ids == ("synth0003_000", "synth0007_000")
    assert train.clips_per_person == {"id00": 4, "id01": 2}
    assert set(train.num_frames) == {12}
    assert data.samples_per_epoch(train, 3, id_sampling=False) == 18  # every clip 3 times
    assert data.samples_per_epoch(train, 3, id_sampling=True) == 6  # every person id 3 times


def test_no_id_sampling_visits_every_clip_num_repeats_times():
    spec = data.PairSpec((8, 8), num_repeats=5)
    counts = data.repeat_counts(["a", "a", "b"], spec, np.random.default_rng(0))
    assert counts.tolist() == [5, 5, 5]


def test_id_sampling_gives_the_original_distribution_per_sample():
    """Person p with n clips: each clip draws Binomial(R, 1/n), so a sample comes from p with probability
    1/#ids and from each of its clips with 1/n, as the original's sampler (a random person, then a random clip) gives."""
    persons = ["a", "a", "a", "a", "b", "c", "c"]
    spec = data.PairSpec((8, 8), num_repeats=6, id_sampling=True, clips_per_person=dict(Counter(persons)))
    rng = np.random.default_rng(0)
    epochs = 4000
    ours = sum(data.repeat_counts(persons, spec, rng) for _ in range(epochs)) / epochs
    want = np.array([6 / 4] * 4 + [6.0] + [3.0] * 2)  # R / n_person per clip
    np.testing.assert_allclose(ours, want, rtol=0.05)
    assert ours.sum() == pytest.approx(3 * 6, rel=0.02)  # the epoch: num_repeats visits of each of 3 persons


def test_pairs_are_two_frames_of_one_clip_in_time_order(synthetic_shards):
    table = _train_table(synthetic_shards).slice(0, 1)  # one clip
    frames = shards.decode_frames(table.column("frames")[0].as_py())  # T×H×W×3
    spec = data.PairSpec((32, 32), num_repeats=40, augment=NO_AUGMENT)
    out = data.clips_to_pairs(table, spec, np.random.default_rng(0))
    assert out["source"].shape == out["driving"].shape == (40, 32, 32, 3)
    assert out["source"].dtype == np.uint8
    flat = frames.reshape(len(frames), -1)
    ties = 0
    for src, drv in zip(out["source"], out["driving"]):
        i = int(np.flatnonzero((flat == src.reshape(-1)).all(axis=1))[0])
        j = int(np.flatnonzero((flat == drv.reshape(-1)).all(axis=1))[0])
        assert i <= j  # the earlier frame is the source
        ties += i == j
    assert ties < 15  # both frames uniform over 12: equal ones are rare (expected 40/12 ≈ 3)


def test_augmentation_is_applied_to_both_frames_alike(synthetic_shards):
    table = _train_table(synthetic_shards).slice(0, 1)
    frames = shards.decode_frames(table.column("frames")[0].as_py())
    flip_only = AugmentationParams.from_dict({"flip_param": {"horizontal_flip": True}})
    out = data.clips_to_pairs(table, data.PairSpec((32, 32), 30, augment=flip_only), np.random.default_rng(3))

    def mirrored(image: np.ndarray) -> bool:
        if any(np.array_equal(image, f) for f in frames):
            return False
        assert any(np.array_equal(image, f[:, ::-1]) for f in frames)
        return True

    flips = [(mirrored(s), mirrored(d)) for s, d in zip(out["source"], out["driving"])]
    assert all(a == b for a, b in flips)  # one draw per sample, applied to both frames
    assert 0 < sum(a for a, _ in flips) < len(flips)  # and both outcomes occur


def test_frames_are_resized_to_the_model_frame_shape(synthetic_shards):
    table = _train_table(synthetic_shards).slice(0, 2)
    out = data.clips_to_pairs(table, data.PairSpec((16, 24), 2, augment=NO_AUGMENT), np.random.default_rng(0))
    assert out["source"].shape == (4, 16, 24, 3)


def test_other_splits_and_zero_counts_give_no_samples(synthetic_shards):
    table = shards.read_table(str(synthetic_shards / "test-00000.parquet"), columns=data.READ_COLUMNS)
    out = data.clips_to_pairs(table, data.PairSpec((32, 32), 3), np.random.default_rng(0))
    assert out["source"].shape == (0, 32, 32, 3)


def test_pair_spec_reads_the_config_augmentation(tiny_config_path):
    cfg = load_config(tiny_config_path)
    index = data.ClipIndex(("c1", "c2"), ("p", "p"), (5, 5))
    spec = data.PairSpec.from_config(cfg, index)
    assert spec.frame_shape == (64, 64) and spec.num_repeats == cfg.train_params.num_repeats
    assert spec.augment is cfg.dataset_params.augmentation_params
    assert spec.augment.flips.time_flip and spec.augment.jitter == dict.fromkeys(spec.augment.jitter, 0.1)


def test_validation_frames_start_at_the_source_and_are_evenly_spaced(synthetic_shards):
    assert data.val_frame_indices(12, 4).tolist() == [0, 4, 7, 11]
    table = shards.read_table(str(synthetic_shards / "test-00000.parquet"), columns=data.READ_COLUMNS)
    out = data.clips_to_val_frames(table, (32, 32), 4, keep_ids=frozenset({"synth0007_000"}))
    assert out["frames"].shape == (1, 4, 32, 32, 3) and out["clip_id"].tolist() == ["synth0007_000"]
    frames = shards.decode_frames(table.column("frames")[1].as_py())
    np.testing.assert_array_equal(out["frames"][0], frames[[0, 4, 7, 11]])


def test_validation_clips_cover_persons_first_and_divide_over_workers():
    index = data.ClipIndex(("a1", "a2", "a3", "b1", "c1"), ("a", "a", "a", "b", "c"), (9,) * 5)
    assert data.choose_val_clips(index, 4) == ["a1", "b1", "c1", "a2"]
    assert data.choose_val_clips(index, 5, multiple_of=2) == ["a1", "b1", "c1", "a2"]
    assert data.choose_val_clips(index, 3, multiple_of=2) == ["a1", "b1"]
    assert data.choose_val_clips(data.ClipIndex((), (), ()), 4) == []


def test_a_folder_without_shards_has_no_clips(tmp_path):
    assert len(data.clip_index(ShardSet.open(str(tmp_path)), "train")) == 0


def test_a_damaged_frame_costs_its_samples_not_the_epoch(synthetic_shards):
    table = _train_table(synthetic_shards).slice(0, 1)
    frames = table.column("frames")[0].as_py()
    row = {name: table.column(name)[0].as_py() for name in data.READ_COLUMNS}
    row["frames"] = [*frames[:3], b"not an image"]  # 4 frames, the last one damaged
    damaged = shards.pa.Table.from_pylist([row], schema=table.select(data.READ_COLUMNS).schema)
    out = data.clips_to_pairs(damaged, data.PairSpec((32, 32), 200, augment=NO_AUGMENT), np.random.default_rng(0))
    # a pair avoids frame 3 with probability (3/4)²: about 112 of 200 samples survive
    assert 80 < len(out["source"]) < 150


def test_a_run_whose_listed_training_shards_hold_no_training_clip_says_the_manifest_lists_them(tmp_path,
                                                                                               tiny_config_path):
    """The train shard replaced by the test one: the manifest still lists it as train. The line said "no clips of
    split 'train'", no more."""
    import json
    import shutil

    from preprocessing.synthetic import write_synthetic_shards
    from training.job import TrainJob
    from training.trainer import plan_run

    root = write_synthetic_shards(tmp_path / "ds", num_videos=4, size=32, num_frames=4, test_every=2)
    shutil.copyfile(root / "test-00000.parquet", root / "train-00000.parquet")
    (root / "_manifest.json").write_text(json.dumps({"shards": [{"file": "train-00000.parquet", "split": "train"},
                                                                {"file": "test-00000.parquet", "split": "test"}]}))
    job = TrainJob(config=str(tiny_config_path), data=str(root), storage=str(tmp_path / "runs"))
    with pytest.raises(data.DataError, match=r"no clips of split 'train' in the shards its manifest lists for it "
                                             r"\(replaced or damaged\?"):
        plan_run(job)
