"""infra/: images, the Dockerfile and the Ray cluster launcher config."""

from __future__ import annotations

import copy
import re
import sys

from tests.infra.manifests import (
    IMAGE_REPO,
    KUBECTL_IMAGE,
    MLFLOW_IMAGE_REPO,
    containers,
    dockerfile,
    expand,
    k8s_docs,
    launcher,
    packages,
    pyproject,
)

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
    # the project with its `eval` extra: the strongest metric backends on the cluster
    project_at = first("RUN", r"pip install (--no-cache-dir )?-c constraints\.txt \"?\.\[eval\]\"?(\s|$)")
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
