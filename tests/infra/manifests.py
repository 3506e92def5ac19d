"""What the infra/ tests share: loading the manifests, the launcher config, the Dockerfile and the README."""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
STAGES = ("preprocess", "train", "tune", "evaluate", "benchmark", "animate_batch")
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


def names_a_secret(name: str) -> bool:
    """A variable or key that holds a secret; one naming the file a secret is in (…_FILE, …_PATH) does not."""
    return bool(SECRET_NAME.search(name)) and not name.upper().endswith(("_FILE", "_PATH"))


def ray_cluster_specs() -> Iterator[tuple[str, dict]]:
    """(where, cluster spec) of the RayCluster and of every RayJob's cluster, ConfigMap-embedded ones included."""
    for where, doc in k8s_docs():
        if doc.get("kind") == "RayCluster":
            yield where, doc["spec"]
        elif doc.get("kind") == "RayJob":
            yield where, doc["spec"]["rayClusterSpec"]


def pod_groups(spec: dict) -> Iterator[tuple[str, dict]]:
    """(group name, group spec) of a cluster's head and worker groups."""
    yield "head", spec["headGroupSpec"]
    for group in spec["workerGroupSpecs"]:
        yield group["groupName"], group


def quantity(text: str | int) -> float:
    """A Kubernetes quantity ('9Gi', '500m', '8589934592') as a number (bytes for memory)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text).strip())
    assert match and (not match.group(2) or match.group(2) in units), f"not a quantity: {text!r}"
    return float(match.group(1)) * units.get(match.group(2), 1)
