"""infra/: the doors are locked and the object store stays in memory.

Ray's token authentication on every cluster (KubeRay and the AWS launcher), MLflow behind its basic-auth app,
credentials only as files from Secrets (never in a pod's environment), /dev/shm that holds each group's object
store, and a GPU host image whose driver runs the CUDA 12.8 containers.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import yaml

from tests.infra.manifests import (
    INFRA,
    containers,
    dockerfile,
    expand,
    k8s_docs,
    launcher,
    load,
    pod_groups,
    quantity,
    ray_cluster_specs,
)

RAY_TOKEN_SECRET = "fomm-ray-token"
RAY_HOME = PurePosixPath("/home/ray")  # the image's user; MLflow reads ~/.mlflow/credentials
# the one variable a pod may take from a Secret: `mlflow server` reads its database URI only from there
ENV_FROM_SECRET_ALLOWED = {"MLFLOW_BACKEND_STORE_URI"}


def _env(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env") or []}


def _config_map() -> dict[str, str]:
    (config_map,) = [d for d in load(INFRA / "common.yaml") if d["kind"] == "ConfigMap"]
    return config_map["data"]


def _mounts(group_or_pod: dict, c: dict) -> dict[str, tuple[str, dict]]:
    """mountPath → (volume name, volume) of one container in its pod template."""
    spec = group_or_pod["template"]["spec"] if "template" in group_or_pod else group_or_pod
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    return {m["mountPath"]: (m["name"], volumes[m["name"]]) for m in c.get("volumeMounts") or []}


def _secret_file(mounts: dict[str, tuple[str, dict]], path: str) -> str | None:
    """The Secret whose mounted folder holds `path`, if any."""
    for mount, (_, volume) in mounts.items():
        if "secret" in volume and PurePosixPath(path).parent == PurePosixPath(mount):
            return volume["secret"]["secretName"]
    return None


def test_every_ray_cluster_requires_the_token_from_a_secret() -> None:
    specs = list(ray_cluster_specs())
    assert len(specs) >= 8, "the RayCluster, six stage RayJobs and the nightly one"
    for where, spec in specs:
        assert spec.get("authOptions") == {"mode": "token", "secretName": RAY_TOKEN_SECRET}, \
            f"{where}: Ray's dashboard and Jobs API must require the token (authOptions mode token, {RAY_TOKEN_SECRET})"
        for _, group in pod_groups(spec):
            for c in containers(group):
                assert _env(c).get("RAY_AUTH_MODE", {}).get("value") in (None, "token"), f"{where}: auth turned off"
    for where, doc in k8s_docs():
        if doc.get("kind") == "RayJob":
            env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"]).get("env_vars", {})
            assert "RAY_AUTH_MODE" not in env, f"{where}: runtimeEnvYAML must not change RAY_AUTH_MODE"


def test_the_aws_launcher_turns_token_auth_on_with_a_token_from_secrets_manager() -> None:
    cfg = launcher()
    options = cfg["docker"]["run_options"]
    env = dict(o.split(None, 1)[1].split("=", 1) for o in options if o.startswith("--env "))
    assert env.get("RAY_AUTH_MODE") == "token"
    token = PurePosixPath(env["RAY_AUTH_TOKEN_PATH"])
    volumes = [o.split(None, 1)[1].split(":") for o in options if o.startswith("--volume ")]
    (host_dir,) = [host for host, inside, *mode in volumes if PurePosixPath(inside) == token.parent and mode == ["ro"]]
    fetch = " ".join(cfg["initialization_commands"])
    assert "aws secretsmanager get-secret-value" in fetch, "the token comes from AWS Secrets Manager"
    written = re.search(r">\s*(\S+)", fetch).group(1)
    ssh_home = PurePosixPath("/home") / cfg["auth"]["ssh_user"]
    assert PurePosixPath(written.replace("~", str(ssh_home))) == PurePosixPath(host_dir) / token.name
    assert "umask 077" in fetch, "the token file is readable by its owner only"


def test_mlflow_requires_a_login_and_ray_pods_have_one() -> None:
    from importlib.metadata import entry_points

    docs = {d["kind"]: d for d in load(INFRA / "mlflow.yaml")}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    args = dict(a.split("=", 1) for a in c["args"] if "=" in a)
    assert args.get("--app-name") == "basic-auth", "the MLflow server must run its basic-auth app"
    assert "basic-auth" in {e.name for e in entry_points(group="mlflow.app")}, "this MLflow has no basic-auth app"
    auth_config = _env(c)["MLFLOW_AUTH_CONFIG_PATH"]["value"]
    assert _secret_file(_mounts(pod, c), auth_config) == "fomm-mlflow-auth", "its admin and user DB come from a Secret"
    # the server image can run that app
    args_docker, instructions = dockerfile()
    stage = instructions[[i for i, (op, a) in enumerate(instructions) if op == "FROM" and a.endswith(" AS mlflow")][0]:]
    assert any(op == "RUN" and re.search(r"mlflow\[auth\]==", expand(a, args_docker)) for op, a in stage[:4])
    # every Ray container logs in with the user in ~/.mlflow/credentials, from a Secret
    for where, spec in ray_cluster_specs():
        for name, group in pod_groups(spec):
            for rc in containers(group):
                mounts = _mounts(group, rc)
                assert _secret_file(mounts, str(RAY_HOME / ".mlflow" / "credentials")) == "fomm-mlflow-client", \
                    f"{where} {name}: no MLflow login mounted at ~/.mlflow/credentials"


def test_credentials_are_files_from_secrets_never_in_a_pods_environment() -> None:
    s3_file = _config_map()["AWS_SHARED_CREDENTIALS_FILE"]
    for where, doc in k8s_docs():
        for c in containers(doc):
            assert not [e for e in c.get("envFrom") or [] if "secretRef" in e], \
                f"{where}: {c['name']} takes a whole Secret into its environment"
            from_secret = {n for n, e in _env(c).items() if "secretKeyRef" in (e.get("valueFrom") or {})}
            assert from_secret <= ENV_FROM_SECRET_ALLOWED, f"{where}: {sorted(from_secret)} in the environment"
    pods = [(f"{w} {n}", g, c) for w, spec in ray_cluster_specs() for n, g in pod_groups(spec) for c in containers(g)]
    docs = {d["kind"]: d for d in load(INFRA / "mlflow.yaml")}
    mlflow_pod = docs["Deployment"]["spec"]["template"]["spec"]
    pods += [("infra/mlflow.yaml", mlflow_pod, c) for c in mlflow_pod["containers"]]
    for where, group, c in pods:
        assert _secret_file(_mounts(group, c), s3_file) == "fomm-s3", f"{where}: S3 keys not mounted at {s3_file}"
        reads_it = {r.get("configMapRef", {}).get("name") for r in c.get("envFrom") or []} == {"fomm-env"} or \
            _env(c).get("AWS_SHARED_CREDENTIALS_FILE", {}).get("valueFrom", {}).get("configMapKeyRef")
        assert reads_it, f"{where}: AWS_SHARED_CREDENTIALS_FILE not set"


def test_dev_shm_holds_each_groups_object_store() -> None:
    """Ray puts the object store in /dev/shm only if it fits there; else it falls back to disk ("This will harm
    performance!"). Every group pins object-store-memory and mounts a memory-backed /dev/shm at least that big."""
    for where, spec in ray_cluster_specs():
        for name, group in pod_groups(spec):
            store = group["rayStartParams"].get("object-store-memory")
            assert store, f"{where} {name}: object-store-memory unset (Ray takes 30% of memory, maybe more than shm)"
            for c in containers(group):
                mounts = _mounts(group, c)
                assert "/dev/shm" in mounts, f"{where} {name}: no /dev/shm volume"
                volume = mounts["/dev/shm"][1]["emptyDir"]
                assert volume.get("medium") == "Memory"
                shm = quantity(volume["sizeLimit"])
                memory = quantity(c["resources"]["limits"]["memory"])
                assert int(store) <= shm <= memory, f"{where} {name}: store {store} B, shm {shm} B, memory {memory} B"


def test_gpu_hosts_run_a_driver_for_the_images_cuda() -> None:
    """The launcher's GPU nodes boot the Base OSS NVIDIA Driver GPU AMI (driver ≥ 570, CUDA 12.8 capable), not
    Ray's `latest_dlami`, whose CUDA 11-era driver cannot run the cu128 containers."""
    args, _ = dockerfile()
    assert args["CUDA"] == "cu128"
    types = launcher()["available_node_types"]
    for name, node in types.items():
        image = node["node_config"]["ImageId"]
        assert image != "latest_dlami", f"infra/ray-cluster.yaml {name}: latest_dlami has a CUDA 11-era driver"
        assert re.fullmatch(r"resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
                            r"base-oss-nvidia-driver-gpu-ubuntu-2[24]\.04/latest/ami-id", image), image
