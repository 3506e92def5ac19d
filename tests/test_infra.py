"""infra/: manifests parse and name pipelines, flags, configs and images that exist; no secret literals."""

from __future__ import annotations

import copy
import functools
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
STAGES = ("preprocess", "train", "tune", "evaluate", "benchmark", "animate")
IMAGE_REPO = "registry.example.com/fomm-pipeline"
MLFLOW_IMAGE_REPO = "registry.example.com/fomm-mlflow"
KUBECTL_IMAGE = re.compile(r"registry\.k8s\.io/kubectl:v\d+\.\d+\.\d+")
NAMESPACE = "fomm"
# `python pipelines/X.py ...` up to the end of the shell command
PIPELINE_CMD = re.compile(r"\bpython3?\s+pipelines/([\w-]+)\.py\b([^\n;&|`]*)")
SECRET_NAME = re.compile(r"SECRET|PASSW(OR)?D|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL|BACKEND_STORE_URI", re.I)
SECRET_VALUE = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@\"'<>]+:[^\s@/\"'$<>]+@"),  # user:password@ (not <placeholders>)
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]


# ---------------------------------------------------------------- loading


def yaml_files() -> list[Path]:
    return sorted(INFRA.rglob("*.yaml")) + sorted(INFRA.rglob("*.yml"))


@functools.cache
def load(path: Path) -> tuple[dict, ...]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as err:
        raise AssertionError(f"{path.relative_to(REPO)}: not valid YAML: {err}") from err
    for i, doc in enumerate(docs):
        assert isinstance(doc, dict), f"{path.relative_to(REPO)}: document {i} is not a mapping"
    return tuple(docs)


def k8s_docs() -> Iterator[tuple[str, dict]]:
    """(where, document) for every Kubernetes object in infra/, including RayJobs kept inside ConfigMaps."""
    for path in yaml_files():
        if path.name == "ray-cluster.yaml":  # the Ray cluster launcher's format, not Kubernetes
            continue
        for i, doc in enumerate(load(path)):
            where = f"{path.relative_to(REPO)}[{i}]"
            yield where, doc
            if doc.get("kind") == "ConfigMap":
                for key, text in (doc.get("data") or {}).items():
                    if key.endswith((".yaml", ".yml")):
                        for j, inner in enumerate(yaml.safe_load_all(text)):
                            yield f"{where}.data.{key}[{j}]", inner


def launcher() -> dict:
    (cfg,) = load(INFRA / "ray-cluster.yaml")
    return cfg


def strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def readme_code() -> str:
    text = (INFRA / "README.md").read_text()
    return "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S))


def pipeline_commands(text: str) -> list[tuple[str, list[str]]]:
    """(script stem, tokens after it) of every `python pipelines/X.py ...` in a shell text."""
    text = text.replace("\\\n", " ")
    return [(m.group(1), shlex.split(m.group(2), comments=True)) for m in PIPELINE_CMD.finditer(text)]


def flags(tokens: list[str]) -> list[str]:
    return [t.split("=", 1)[0] for t in tokens if t.startswith("--")]


def options(tokens: list[str]) -> dict[str, str]:
    """`--key value` / `--key=value` / bare `--switch` → {key: value or ''}."""
    out: dict[str, str] = {}
    for i, token in enumerate(tokens):
        if token.startswith("--"):
            key, sep, value = token[2:].partition("=")
            if not sep and i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
            out[key] = value
    return out


def all_commands() -> list[tuple[str, str, list[str]]]:
    """(where, script, tokens) of every pipeline command in the manifests, the launcher and infra/README.md."""
    found = []
    for where, doc in k8s_docs():
        for s in strings(doc):
            found += [(where, script, tokens) for script, tokens in pipeline_commands(s)]
    for s in strings(launcher()):
        found += [("infra/ray-cluster.yaml", script, tokens) for script, tokens in pipeline_commands(s)]
    found += [("infra/README.md", script, tokens) for script, tokens in pipeline_commands(readme_code())]
    return found


def containers(doc: dict) -> Iterator[dict]:
    """Every container (and init container) anywhere in a document, pod templates of RayClusters included."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from containers(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from containers(value)


def rayjob(stage: str) -> dict:
    path = INFRA / "kuberay" / f"rayjob-{stage}.yaml"
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    jobs = [d for d in load(path) if d.get("kind") == "RayJob"]
    assert len(jobs) == 1, f"{path.relative_to(REPO)}: expected one RayJob, found {len(jobs)}"
    return jobs[0]


def dockerfile() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(ARG defaults, [(instruction, argument)]) of infra/Dockerfile, continuation lines joined."""
    text = (INFRA / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    instructions = [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]
    args = {}
    for op, arg in instructions:
        if op == "ARG" and "=" in arg:
            key, value = arg.split("=", 1)
            args.setdefault(key.strip(), value.strip())
    return args, instructions


def expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)


def pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def packages() -> list[str]:
    """Top-level packages that `pip install .` installs (pyproject's packages.find include, minus the '*')."""
    return [p.rstrip("*") for p in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]]


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
        elif stage == "animate":
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


# ---------------------------------------------------------------- secrets


def test_no_secret_literals() -> None:
    for where, doc in k8s_docs():
        kind = doc.get("kind")
        assert kind != "Secret", f"{where}: Secrets are created from the environment, never committed"
        if kind == "ConfigMap":
            bad = [k for k in (doc.get("data") or {}) if SECRET_NAME.search(k)]
            assert not bad, f"{where}: secret-like keys in a ConfigMap: {bad}"
        for c in containers(doc):
            for var in c.get("env") or []:
                if SECRET_NAME.search(var["name"]):
                    assert "value" not in var and "secretKeyRef" in (var.get("valueFrom") or {}), \
                        f"{where}: {var['name']} must come from a Secret (valueFrom.secretKeyRef)"
            for arg in [*(c.get("command") or []), *(c.get("args") or [])]:
                assert not SECRET_NAME.search(str(arg).split("=", 1)[0]), f"{where}: secret in arguments: {arg}"
        if kind == "RayJob":
            env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"]).get("env_vars", {})
            bad = [k for k in env if SECRET_NAME.search(k)]
            assert not bad, f"{where}: runtimeEnvYAML carries secrets {bad}; use secretKeyRef / envFrom"
    for option in launcher()["docker"].get("run_options", []):
        assert not SECRET_NAME.search(option), f"infra/ray-cluster.yaml: secret in docker run_options: {option}"
    for path in [*yaml_files(), INFRA / "README.md", INFRA / "Dockerfile"]:
        for pattern in SECRET_VALUE:
            match = pattern.search(path.read_text())
            assert match is None, f"{path.relative_to(REPO)}: looks like a secret literal: {match.group(0)!r}"


def test_secrets_referenced_are_documented() -> None:
    """Each Secret the pods read is named, with its keys, in the README's `kubectl create secret` commands."""
    refs: set[tuple[str, str | None]] = set()
    for _, doc in k8s_docs():
        for c in containers(doc):
            for var in c.get("env") or []:
                ref = (var.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
            refs |= {(e["secretRef"]["name"], None) for e in c.get("envFrom") or [] if "secretRef" in e}
    assert refs, "no pod reads a Secret"
    code = readme_code()
    for name, key in refs:
        assert re.search(rf"kubectl[^\n]*create secret generic {name}\b", code), f"README: create {name}?"
        if key:
            assert f"--from-literal={key}=" in code, f"README: secret {name} needs key {key}"


# ---------------------------------------------------------------- images


def test_images_are_consistent() -> None:
    import mlflow

    args, _ = dockerfile()
    version = pyproject()["project"]["version"]
    cpu, gpu = f"{IMAGE_REPO}:{version}", f"{IMAGE_REPO}:{version}-{args['CUDA']}"
    for where, doc in k8s_docs():
        for c in containers(doc):
            image = c["image"]
            if image.startswith(IMAGE_REPO + ":"):
                wants_gpu = "nvidia.com/gpu" in (c.get("resources", {}).get("limits") or {})
                want = gpu if wants_gpu else cpu
                assert image == want, f"{where}: {c['name']} should run {want}"
                assert c.get("workingDir") == "/home/ray/fomm", f"{where}: {c['name']}: workingDir?"
            elif image.startswith(MLFLOW_IMAGE_REPO + ":"):
                assert image == f"{MLFLOW_IMAGE_REPO}:{mlflow.__version__}", f"{where}: MLflow version?"
                assert args["MLFLOW_VERSION"] == mlflow.__version__
            else:
                assert KUBECTL_IMAGE.fullmatch(image), f"{where}: unexpected image {image}"
    cfg = launcher()
    assert cfg["docker"]["image"] == cpu
    assert cfg["available_node_types"]["gpu"]["docker"]["worker_image"] == gpu


def test_dockerfile() -> None:
    import ray
    import torch

    args, instructions = dockerfile()
    assert args["RAY_VERSION"] == ray.__version__
    assert args["PYTHON_TAG"] == f"py{sys.version_info.major}{sys.version_info.minor}"
    assert args["TORCH_VERSION"] == torch.__version__.split("+")[0]
    froms = [expand(arg, args).split()[0] for op, arg in instructions if op == "FROM"]
    assert f"rayproject/ray:{ray.__version__}-py311" in froms
    assert f"rayproject/ray:{ray.__version__}-py311-{args['CUDA']}" in froms
    assert re.fullmatch(r"cu12\d", args["CUDA"]), "the GPU flavour is a CUDA 12 build"
    # the final (default) stage: pinned torch first, then the project; never root; pipelines/ and configs/ there
    stage = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM"):]

    def first(op: str, pattern: str) -> int:
        at = [i for i, (o, a) in enumerate(stage) if o == op and re.search(pattern, expand(a, args))]
        assert at, f"Dockerfile: no {op} matching {pattern!r} in the final stage"
        return at[0]

    torch_at = first("RUN", rf"pip install .*torch=={re.escape(torch.__version__.split('+')[0])}\b")
    project_at = first("RUN", r"pip install (--no-cache-dir )?-c constraints\.txt \.(\s|$)")
    assert first("COPY", r"(^|\s)constraints\.txt(\s|$)") < project_at, "the tested versions pin the image's packages"
    assert torch_at < project_at, "torch must be installed (pinned) before the project"
    assert "--index-url" in stage[torch_at][1], "torch comes from the flavour's PyTorch index"
    users = [arg for op, arg in stage if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"final USER {users[-1:]} must not be root"
    assert [arg for op, arg in stage if op == "WORKDIR"][-1] == "/home/ray/fomm"
    for folder in ("pipelines", "configs", *packages()):
        at = first("COPY", rf"(^|\s){folder}/? {folder}/?$")
        if folder not in ("pipelines", "configs"):
            assert at < project_at, f"Dockerfile: {folder}/ must be copied before `pip install .`"


# ---------------------------------------------------------------- launcher, cron, MLflow


def test_ray_cluster_launcher_config_validates() -> None:
    """The same checks `ray up` runs on it: defaults filled in, then Ray's JSON schema."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = launcher()
    validate_config(prepare_config(copy.deepcopy(cfg)))
    types = cfg["available_node_types"]
    assert {cfg["head_node_type"], "cpu", "gpu"} <= types.keys()
    assert types[cfg["head_node_type"]]["resources"] == {"CPU": 0}


def test_benchmark_cron_creates_the_benchmark_rayjob() -> None:
    docs = {d["kind"]: d for d in load(INFRA / "kuberay" / "benchmark-cron.yaml")}
    cron = docs["CronJob"]
    assert len(cron["spec"]["schedule"].split()) == 5
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][:2] == ["create", "-f"], "`create` (not apply) the RayJob: generateName, one per run"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] in mounts and "configMap" in v)
    template = Path(c["args"][2])
    assert template.parent == Path(mounts[volume["name"]])
    assert volume["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    embedded = yaml.safe_load(docs["ConfigMap"]["data"][template.name])
    (standalone,) = load(INFRA / "kuberay" / "rayjob-benchmark.yaml")
    assert embedded == standalone, "benchmark-cron.yaml's RayJob differs from rayjob-benchmark.yaml"
    assert embedded["metadata"].get("generateName") and "name" not in embedded["metadata"]
    assert embedded["spec"]["backoffLimit"] == 0, "a regression (exit 1) must not be retried"
    # RBAC: the pod's service account may create RayJobs
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    binding = docs["RoleBinding"]
    assert binding["roleRef"]["name"] == docs["Role"]["metadata"]["name"]
    subject = {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE}
    assert subject in binding["subjects"]
    assert any("rayjobs" in r["resources"] and "create" in r["verbs"] and "ray.io" in r["apiGroups"]
               for r in docs["Role"]["rules"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy's, on importing MLflow's server CLI
def test_mlflow_server_manifest() -> None:
    """Its flags exist in this MLflow, the tracking URI names its Service, and the server accepts that Host."""
    from urllib.parse import urlparse

    from mlflow.cli import server
    from mlflow.server.security_utils import is_allowed_host_header

    docs = {d["kind"]: d for d in load(INFRA / "mlflow.yaml")}
    (c,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["mlflow", "server"]
    opts = {o: p for p in server.params for o in (*p.opts, *p.secondary_opts)}
    for arg in c["args"]:
        assert arg.split("=", 1)[0] in opts, f"infra/mlflow.yaml: `mlflow server` has no {arg.split('=')[0]}"
    env = {e["name"]: e for e in c["env"]}
    assert opts["--backend-store-uri"].envvar in env, "the backend store URI comes from the environment"
    assert "secretKeyRef" in env[opts["--backend-store-uri"].envvar]["valueFrom"]
    args = dict(a.split("=", 1) for a in c["args"] if "=" in a)
    assert args["--artifacts-destination"].startswith("s3://")
    # the URI every Ray pod uses must name this Service and be let in by --allowed-hosts
    (config_map,) = [d for d in load(INFRA / "common.yaml") if d["kind"] == "ConfigMap"]
    uri = urlparse(config_map["data"]["MLFLOW_TRACKING_URI"])
    service = docs["Service"]
    assert uri.hostname.split(".")[:2] == [service["metadata"]["name"], service["metadata"]["namespace"]]
    assert uri.port in [p["port"] for p in service["spec"]["ports"]]
    allowed = args["--allowed-hosts"].split(",")
    assert is_allowed_host_header(allowed, uri.netloc), f"--allowed-hosts turns {uri.netloc} away"
    assert is_allowed_host_header(allowed, "localhost:5000")  # kubectl port-forward
    assert not is_allowed_host_header(allowed, "attacker.example.com:5000")
