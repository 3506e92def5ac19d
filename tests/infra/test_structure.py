"""infra/: manifests parse; they run pipelines, flags, configs and env vars that exist; jobs fit their clusters."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.infra.manifests import (
    INFRA,
    NAMESPACE,
    REPO,
    STAGES,
    all_commands,
    containers,
    flags,
    k8s_docs,
    launcher,
    load,
    options,
    packages,
    pipeline_commands,
    rayjob,
    readme_code,
    strings,
    yaml_files,
)


@pytest.fixture(scope="module")
def help_texts() -> dict[str, str | None]:
    """`python pipelines/X.py --help` of every script infra/ names, all at once (each imports Ray and torch)."""
    scripts = sorted({script for _, script, _ in all_commands()} | set(STAGES))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    procs = {}
    for script in scripts:
        path = REPO / "pipelines" / f"{script}.py"
        if path.is_file():
            procs[script] = subprocess.Popen([sys.executable, str(path), "--help"], cwd=REPO, env=env,
                                             text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out: dict[str, str | None] = dict.fromkeys(scripts)
    for script, proc in procs.items():
        text, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"pipelines/{script}.py --help exited {proc.returncode}:\n{text[-2000:]}"
        out[script] = text
    return out


# ---------------------------------------------------------------- structure


def test_every_manifest_parses_as_kubernetes_objects() -> None:
    files = yaml_files()
    names = {p.relative_to(INFRA).as_posix() for p in files}
    expected = {"common.yaml", "mlflow.yaml", "ray-cluster.yaml", "kuberay/raycluster.yaml",
                "kuberay/benchmark-cron.yaml", *(f"kuberay/rayjob-{s}.yaml" for s in STAGES)}
    assert expected <= names, f"missing under infra/: {sorted(expected - names)}"
    for where, doc in k8s_docs():
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{where}: needs apiVersion, kind and metadata"
        meta = doc["metadata"]
        assert meta.get("name") or meta.get("generateName"), f"{where}: no metadata.name"
        if doc["kind"] != "Namespace":
            assert meta.get("namespace") == NAMESPACE, f"{where}: namespace should be {NAMESPACE!r}"


@pytest.mark.parametrize("stage", STAGES)
def test_stage_rayjob(stage: str) -> None:
    import ray

    job = rayjob(stage)
    spec = job["spec"]
    assert job["apiVersion"] == "ray.io/v1"
    (command,) = pipeline_commands(spec["entrypoint"])
    assert command[0] == stage, f"rayjob-{stage}.yaml runs pipelines/{command[0]}.py"
    assert spec["shutdownAfterJobFinishes"] is True, f"rayjob-{stage}.yaml: the cluster must go away afterwards"
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert env and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()), \
        f"rayjob-{stage}.yaml: runtimeEnvYAML env_vars must map names to strings: {env}"
    assert spec["rayClusterSpec"]["rayVersion"] == ray.__version__


def test_raycluster_matches_installed_ray() -> None:
    import ray

    (cluster,) = [d for d in load(INFRA / "kuberay" / "raycluster.yaml") if d.get("kind") == "RayCluster"]
    assert cluster["spec"]["rayVersion"] == ray.__version__
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    assert {"cpu", "gpu"} <= groups.keys()
    assert any("nvidia.com/gpu" in c["resources"]["limits"] for c in containers(groups["gpu"]))


# ---------------------------------------------------------------- entry points, flags, configs


def test_commands_are_found() -> None:
    scripts = {script for _, script, _ in all_commands()}
    assert set(STAGES) <= scripts, f"no command runs {sorted(set(STAGES) - scripts)}"
    assert any(w == "infra/README.md" for w, _, _ in all_commands()), "infra/README.md shows no command"


@pytest.mark.parametrize("stage", STAGES)
def test_pipeline_exists_and_accepts_every_flag(stage: str, help_texts: dict[str, str | None]) -> None:
    """Each stage's script exists (a missing one FAILS) and knows every flag that infra/ passes it."""
    script = REPO / "pipelines" / f"{stage}.py"
    assert script.is_file(), f"pipelines/{stage}.py does not exist, but infra/ runs it"
    known = set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", help_texts[stage] or ""))
    for where, name, tokens in all_commands():
        if name == stage:
            unknown = [f for f in flags(tokens) if f not in known]
            assert not unknown, f"{where}: pipelines/{stage}.py has no {unknown} (its --help: {sorted(known)})"


def test_every_named_script_exists() -> None:
    for where, script, _ in all_commands():
        assert (REPO / "pipelines" / f"{script}.py").is_file(), f"{where}: pipelines/{script}.py does not exist"


def test_configs_named_exist() -> None:
    texts = [(w, s) for w, doc in k8s_docs() for s in strings(doc)]
    texts += [("infra/ray-cluster.yaml", s) for s in strings(launcher())]
    texts.append(("infra/README.md", readme_code()))
    named = [(w, m) for w, s in texts for m in re.findall(r"(?<![\w/.-])configs/[\w./-]+\.ya?ml", s)]
    assert named, "no manifest names a config"
    for where, config in named:
        assert (REPO / config).is_file(), f"{where}: {config} does not exist"


def test_resources_fit_the_job() -> None:
    """What each entrypoint asks of Ray fits the cluster its RayJob builds (else the job waits forever)."""
    for stage in STAGES:
        spec = rayjob(stage)["spec"]
        opts = options(pipeline_commands(spec["entrypoint"])[0][1])
        cpus = gpus = 0.0
        head_params = spec["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]
        assert str(head_params.get("num-cpus")) == "0", f"rayjob-{stage}: keep tasks off the head"
        for group in spec["rayClusterSpec"]["workerGroupSpecs"]:
            (c,) = list(containers(group))
            limits = c["resources"]["limits"]
            cpus += group["replicas"] * float(limits["cpu"])
            gpus += group["replicas"] * float(limits.get("nvidia.com/gpu", 0))
        per = {"cpu": float(opts.get("cpus-per-worker", 1)), "gpu": float(opts.get("gpus-per-worker", 0))}
        if stage == "train":
            need_cpu, need_gpu = int(opts["workers"]) * per["cpu"], int(opts["workers"]) * per["gpu"]
            assert need_gpu > 0, "the train RayJob should train on GPUs"
        elif stage == "tune":  # trials at once × DDP workers per trial (one CPU each)
            n = int(opts.get("max-concurrent", 1)) * int(opts.get("workers", 1))
            need_cpu, need_gpu = n * 1.0, n * per["gpu"]
            assert need_gpu > 0, "the tune RayJob should train its trials on GPUs"
        elif stage in ("evaluate", "benchmark"):
            need_cpu, need_gpu = int(opts["workers"]) * per["cpu"], 0
        elif stage == "animate_batch":
            n = int(opts.get("concurrency", 1))
            on_gpu = opts.get("device", "cpu").startswith("cuda")
            need_cpu, need_gpu = n * float(opts.get("num-cpus", 1)), n * on_gpu
        elif stage == "preprocess":
            need_cpu, need_gpu = int(opts["workers"]), 0
        else:
            raise AssertionError(f"no resource rule for {stage}")
        assert need_cpu <= cpus, f"rayjob-{stage}: asks {need_cpu} CPUs, its workers have {cpus}"
        assert need_gpu <= gpus, f"rayjob-{stage}: asks {need_gpu} GPUs, its workers have {gpus}"


def test_env_vars_named_are_read_by_the_code() -> None:
    """Every FOMM_* variable the infra sets is read somewhere in the project's packages."""
    sources = "\n".join(p.read_text() for pkg in packages() for p in (REPO / pkg).rglob("*.py"))
    names = set()
    for path in [*yaml_files(), INFRA / "README.md"]:
        names |= set(re.findall(r"\bFOMM_[A-Z0-9_]+\b", path.read_text()))
    assert "FOMM_S3_ENDPOINT" in names
    for name in names - {"FOMM_TORCH_INDEX_URL"}:
        assert name in sources, f"infra sets {name}, but no module reads it"
    # the launcher's containers get the same settings as the Kubernetes pods
    (config_map,) = [d for d in load(INFRA / "common.yaml") if d["kind"] == "ConfigMap"]
    run_env = dict(o.split(None, 1)[1].split("=", 1) for o in launcher()["docker"]["run_options"]
                   if o.startswith("--env "))
    assert run_env and all(config_map["data"].get(k, v) == v for k, v in run_env.items()), \
        f"infra/ray-cluster.yaml sets {run_env}, infra/common.yaml {config_map['data']}"
