"""infra/: the nightly benchmark CronJob and the MLflow server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.infra.manifests import (
    INFRA,
    NAMESPACE,
    load,
)

# ---------------------------------------------------------------- cron, MLflow


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
    from mlflow.environment_variables import MLFLOW_SERVER_ENABLE_JOB_EXECUTION as JOBS

    assert env[JOBS.name]["value"].lower() == "false" and JOBS.default  # on unless set: 9 idle processes
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
