"""Checkpoint I/O: the reference vox-256 key list, bit-exact round trips, clear errors naming the file."""

import random
import re
import warnings
from pathlib import Path

import pytest
import torch

from fomm.checkpoint import (
    CheckpointError,
    checkpoint_bytes,
    load_checkpoint,
    load_parts,
    read_checkpoint,
    require_checkpoint,
)
from fomm.config.schema import load_config
from fomm.discriminator import MultiScaleDiscriminator
from fomm.generator import OcclusionAwareGenerator
from fomm.keypoint_detector import KPDetector

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "fomm-vox256-state-keys.txt"


def reference_entries() -> dict[str, tuple[tuple[int, ...], str]]:
    entries = {}
    for line in REFERENCE.read_text().splitlines():
        m = re.match(r"(\S+) \((.*)\) (\S+)$", line.strip())
        if m and not line.startswith("#"):
            shape = tuple(int(x) for x in m.group(2).split(",") if x.strip())
            entries[m.group(1)] = (shape, m.group(3))
    return entries


def test_vox256_state_dict_equals_the_reference_list(repo_root):
    cfg = load_config(repo_root / "configs" / "vox-256.yaml").model_params
    modules = {"kp_detector": KPDetector.from_config(cfg), "generator": OcclusionAwareGenerator.from_config(cfg),
               "discriminator": MultiScaleDiscriminator.from_config(cfg)}
    ours = {f"{name}.{k}": (tuple(v.shape), str(v.dtype).replace("torch.", ""))
            for name, m in modules.items() for k, v in m.state_dict().items()}
    ref = reference_entries()
    assert len(ref) == 297
    assert ours == ref
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}
    assert counts == {"kp_detector": 14_215_368, "generator": 45_575_391, "discriminator": 2_758_849}


@pytest.fixture()
def tiny(tiny_config_path):
    cfg = load_config(tiny_config_path).model_params
    return cfg, KPDetector.from_config(cfg), OcclusionAwareGenerator.from_config(cfg)


def test_round_trip_is_bit_exact(tmp_path, tiny):
    cfg, kp, gen = tiny
    disc = MultiScaleDiscriminator.from_config(cfg)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-3)
    gen(torch.rand(1, 3, 64, 64), kp_source=kp(torch.rand(1, 3, 64, 64)),
        kp_driving=kp(torch.rand(1, 3, 64, 64)))["prediction"].mean().backward()
    opt.step()
    path = tmp_path / "ckpt.pth.tar"
    path.write_bytes(checkpoint_bytes(generator=gen, kp_detector=kp, discriminator=disc, optimizer_generator=opt,
                                      epoch=7))
    assert sorted(read_checkpoint(path)) == ["discriminator", "epoch", "generator", "kp_detector",
                                             "optimizer_generator"]
    kp2, gen2 = KPDetector.from_config(cfg), OcclusionAwareGenerator.from_config(cfg)
    opt2 = torch.optim.Adam(gen2.parameters(), lr=1e-3)
    assert load_checkpoint(path, generator=gen2, kp_detector=kp2, optimizer_generator=opt2) == 7
    for a, b in ((gen, gen2), (kp, kp2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    st_a, st_b = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(st_a[i]["exp_avg"], st_b[i]["exp_avg"]) for i in st_a)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left no temporary


def test_bytes_already_read_load_without_the_file(tiny):
    """A checkpoint's bytes read once (an evaluation's Ray actors): its path only names it, e.g. an s3:// URL."""
    cfg, kp, gen = tiny
    data = checkpoint_bytes(generator=gen, kp_detector=kp, epoch=3)
    kp2, gen2 = KPDetector.from_config(cfg), OcclusionAwareGenerator.from_config(cfg)
    assert load_checkpoint("s3://bucket/run/ckpt.pth.tar", generator=gen2, kp_detector=kp2, data=data) == 3
    assert all(torch.equal(a, b) for a, b in zip(gen.state_dict().values(), gen2.state_dict().values()))
    with pytest.raises(CheckpointError, match="^s3://bucket/x.pth: not a checkpoint"):
        read_checkpoint("s3://bucket/x.pth", data=b"model_params: {}\n")


def test_a_checkpoint_saved_from_a_data_parallel_wrapper_loads_its_module_prefix_taken_off(tiny):
    """Weights saved as `nn.DataParallel(net).state_dict()` (or DDP's) carry `module.` on every key: refused as "does
    not fit" before; the same weights load."""
    cfg, kp, gen = tiny
    state = {"generator": torch.nn.DataParallel(gen).state_dict()}
    assert all(k.startswith("module.") for k in state["generator"])
    gen2 = OcclusionAwareGenerator.from_config(cfg)
    load_parts(state, "ckpt", generator=gen2)
    assert all(torch.equal(a, b) for a, b in zip(gen.state_dict().values(), gen2.state_dict().values(), strict=True))
    state["generator"]["extra.weight"] = torch.zeros(1)  # one key without it: the prefix is the state's own
    with pytest.raises(CheckpointError, match="'generator' does not fit the model config: missing"):
        load_parts(state, "ckpt", generator=OcclusionAwareGenerator.from_config(cfg))


def test_truncated_file_names_the_file(tmp_path, tiny):
    cfg, kp, gen = tiny
    path = tmp_path / "ok.pth.tar"
    path.write_bytes(checkpoint_bytes(generator=gen, kp_detector=kp))
    bad = tmp_path / "truncated.pth.tar"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pth\.tar: not a readable checkpoint"):
        load_checkpoint(bad, generator=gen)
    with pytest.raises(CheckpointError, match=r"nowhere\.pth: checkpoint file not found"):
        load_checkpoint(tmp_path / "nowhere.pth", generator=gen)


def test_a_cut_off_checkpoint_is_found_from_its_zip_directory_alone(tmp_path, tiny, tiny_config_path):
    """`require_checkpoint` (what --resume, --init-from and evaluate check before they read a checkpoint whole)
    refuses a file cut anywhere, even a byte short, and one of another kind; it passes a whole one and a legacy
    pickle, whose wholeness only reading it tells."""
    cfg, kp, gen = tiny
    whole = checkpoint_bytes(generator=gen, kp_detector=kp)
    path = tmp_path / "ok.pth.tar"
    path.write_bytes(whole)
    with open(path, "rb") as f:
        require_checkpoint(f, path)
    for cut in (len(whole) - 1, len(whole) // 2, 10):
        path.write_bytes(whole[:cut])
        with open(path, "rb") as f, pytest.raises(CheckpointError, match=r"ok\.pth\.tar: not a readable checkpoint"):
            require_checkpoint(f, path)
    legacy = tmp_path / "legacy.pth"
    torch.save({"generator": {}}, legacy, _use_new_zipfile_serialization=False)
    with open(legacy, "rb") as f:
        require_checkpoint(f, legacy)
    assert read_checkpoint(legacy) == {"generator": {}}
    huge = tmp_path / "disk.img"  # a file of another kind, refused from its head: 12 GB was read whole first
    with huge.open("wb") as f:
        f.truncate(12 << 30)  # sparse: no disk used
    with open(huge, "rb") as f, pytest.raises(CheckpointError, match=r"disk\.img: not a checkpoint \(expected a PyTorch"):
        require_checkpoint(f, huge)
    from evaluation.reconstruction import ModelSource
    from training.job import TrainJob, read_init_checkpoint

    with pytest.raises(CheckpointError, match=r"disk\.img: not a checkpoint"):
        ModelSource.resolve(tiny_config_path, huge)
    with pytest.raises(CheckpointError, match=r"disk\.img: not a checkpoint"):
        read_init_checkpoint(TrainJob(config=str(tiny_config_path), data="-", storage="-", init_from=str(huge)), check=True)


def test_wrong_config_lists_mismatched_keys(tmp_path, tiny, repo_root):
    cfg, kp, gen = tiny
    path = tmp_path / "tiny.pth.tar"
    path.write_bytes(checkpoint_bytes(generator=gen, kp_detector=kp))
    vox = load_config(repo_root / "configs" / "vox-256.yaml").model_params
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, kp_detector=KPDetector.from_config(vox))
    msg = str(err.value)
    assert "tiny.pth.tar: 'kp_detector' does not fit the model config" in msg
    assert "missing 28: predictor.encoder.down_blocks.3.conv.weight" in msg  # vox: 5 hourglass blocks, tiny 3
    assert "shape mismatch" in msg and "predictor.encoder.down_blocks.0.conv.weight" in msg


class _RunsACommand:  # what a malicious checkpoint holds: a call of os.system when unpickled
    def __reduce__(self):  # noqa: ANN204
        import os

        return os.system, ("true",)


@pytest.mark.parametrize(("thing", "named"), [
    (Path("x"), r"pathlib\.\S*Path"),  # a class torch does not allow
    (_RunsACommand(), r"posix\.system"),  # a function of a module torch blocks: "not readable (truncated or corrupt?)
])                                        # … Re-running torch.load with weights_only set to False will likely succeed"
def test_arbitrary_pickles_are_refused_naming_the_class(tmp_path, thing, named):
    path = tmp_path / "evil.pth.tar"
    torch.save({"generator": {}, "note": thing}, path)  # a non-tensor object inside
    with pytest.raises(CheckpointError, match=rf"^\S*evil\.pth\.tar: refused to load: it holds a {named} object, "
                                              r"and only tensors and plain containers are read \(weights_only=True\)$"):
        read_checkpoint(path)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5, 53, 255])
def test_damaged_bytes_after_a_pickle_head_are_corrupt_in_one_message_without_torchs_warning(tmp_path, protocol):
    """A legacy (pickle) head, 0x80 and a protocol byte, then noise: torch warned of the protocol on stderr (a second
    line under the user's error) and its refusal read as 'holds objects other than tensors' with its advice to load
    with weights_only=False. The file is damaged, not foreign: it says so, and nothing else is printed."""
    path = tmp_path / "noise.pth.tar"
    path.write_bytes(bytes([0x80, protocol]) + random.Random(protocol).randbytes(254))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(path)
    assert re.match(r"\S*noise\.pth\.tar: not a readable checkpoint \(truncated or corrupt\?\): \S", str(err.value))
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("content", [b"", b"dataset_params:\n  frame_shape: [64, 64, 3]\n", b"\xff\xd8\xff\xe0JFIF"])
def test_a_file_that_is_no_checkpoint_says_so(tmp_path, content):
    path = tmp_path / "swapped.pth.tar"  # an empty file, a config, a JPEG given as the checkpoint
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"swapped\.pth\.tar: not a checkpoint \(expected a PyTorch"):
        read_checkpoint(path)
    yaml = path.with_name("vox-256.yaml")  # --config and --checkpoint swapped: said so
    path.rename(yaml)
    with pytest.raises(CheckpointError, match=r"vox-256\.yaml: a YAML config, not a checkpoint \(a config goes to "
                                              r"--config\)$"):
        read_checkpoint(yaml)


def test_a_misspelled_part_is_refused_not_written_or_skipped(tiny):
    """Parts go by the format's names: a typo would write a key no loader reads, or skip an optimiser's state."""
    _, kp, _ = tiny
    with pytest.raises(TypeError, match="not a checkpoint part: kp_detecter"):
        checkpoint_bytes(kp_detecter=kp)
    data = checkpoint_bytes(kp_detector=kp)
    with pytest.raises(TypeError, match="not a checkpoint part: optimiser_kp_detector"):
        load_checkpoint("x.pth", data=data, kp_detector=kp, optimiser_kp_detector=torch.optim.Adam(kp.parameters()))


@pytest.mark.parametrize(("bad", "held"), [(float("nan"), "NaN or inf values"), (float("inf"), "NaN or inf values"),
                                           (-float("inf"), "NaN or inf values"),
                                           (-1.0, "negative batch-norm variances")])  # finite, yet every frame NaN
def test_weights_of_a_diverged_run_are_refused_and_the_model_left_as_it_was(tmp_path, tiny, bad, held):
    """A NaN/inf weight or batch-norm statistic, or a variance below 0, would animate into a black video reported
    as a success."""
    cfg, kp, gen = tiny
    state = {k: v.clone() for k, v in kp.state_dict().items()}
    name = next(k for k in state if k.endswith("running_var"))
    state[name].view(-1)[1] = bad
    path = tmp_path / "diverged.pth.tar"
    torch.save({"kp_detector": state}, path)
    before = {k: v.clone() for k, v in kp.state_dict().items()}
    with pytest.raises(CheckpointError, match=rf"diverged\.pth\.tar: 'kp_detector' holds {held} "
                                              rf"\(1 of its tensors, e\.g\. {re.escape(name)}\)"):
        load_checkpoint(path, kp_detector=kp)
    assert all(torch.equal(v, before[k]) for k, v in kp.state_dict().items())


@pytest.mark.parametrize("epoch", ["abc", [3], float("inf")])
def test_an_epoch_that_is_no_whole_number_is_a_checkpoint_error(tmp_path, tiny, epoch):
    cfg, kp, gen = tiny
    path = tmp_path / "epoch.pth.tar"
    torch.save({"kp_detector": kp.state_dict(), "epoch": epoch}, path)
    with pytest.raises(CheckpointError, match=r"epoch\.pth\.tar: its 'epoch' is not a whole number"):
        load_checkpoint(path, kp_detector=kp)


@pytest.mark.parametrize("held", [5, "x", [1, 2]])
def test_a_network_entry_that_is_no_state_dict_is_a_checkpoint_error(tmp_path, tiny, held):
    """`{'kp_detector': 5}` was a TypeError traceback from inside the key check."""
    cfg, kp, gen = tiny
    path = tmp_path / "odd.pth.tar"
    torch.save({"kp_detector": held}, path)
    with pytest.raises(CheckpointError, match=rf"odd\.pth\.tar: 'kp_detector' is not a state dict of tensors \(it "
                                              rf"holds the {type(held).__name__} "):
        load_checkpoint(path, kp_detector=kp)


@pytest.mark.parametrize(("convert", "held"), [
    (lambda t: t.to(torch.int32), "torch.int32 strided tensor on cpu"),  # loaded truncated: ran, exit 0
    (lambda t: t.bool(), "torch.bool strided tensor on cpu"),  # loaded as 0/1 weights: ran, exit 0
    (lambda t: t.to(torch.complex64), "torch.complex64 strided"),  # a traceback from the NaN check
    (lambda t: t.to_sparse(), "torch.float32 sparse_coo tensor"),  # 124 lines of traceback
    (lambda t: torch.empty_like(t, device="meta"), "tensor on meta"),  # a traceback
])
def test_weights_of_another_kind_than_the_models_are_a_checkpoint_error(tmp_path, tiny, convert, held):
    cfg, kp, gen = tiny
    state = kp.state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 4)  # a conv weight
    torch.save({"kp_detector": {**state, name: convert(state[name])}}, tmp_path / "odd.pth.tar")
    with pytest.raises(CheckpointError, match=rf"odd\.pth\.tar: 'kp_detector' holds {re.escape(name)} as a .*"
                                              rf"{re.escape(held)}.*, not a dense torch.float32 tensor"):
        load_checkpoint(tmp_path / "odd.pth.tar", kp_detector=kp)
