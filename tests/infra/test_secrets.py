"""infra/: no secret literals; every Secret read is documented."""

from __future__ import annotations

import re

import yaml

from tests.infra.manifests import (
    INFRA,
    REPO,
    SECRET_NAME,
    SECRET_VALUE,
    containers,
    k8s_docs,
    launcher,
    names_a_secret,
    ray_cluster_specs,
    readme_code,
    yaml_files,
)

# the file each Secret mounted as a volume must hold (the key the pods read it by)
SECRET_FILES = {"fomm-s3": "credentials", "fomm-mlflow-client": "credentials", "fomm-mlflow-auth": "basic_auth.ini"}


def mounted_secrets() -> set[str]:
    """Names of the Secrets that some pod mounts as a volume."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("secret"), dict) and "secretName" in node["secret"]:
                found.add(node["secret"]["secretName"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for _, doc in k8s_docs():
        walk(doc)
    return found


# ---------------------------------------------------------------- secrets


def test_no_secret_literals() -> None:
    for where, doc in k8s_docs():
        kind = doc.get("kind")
        assert kind != "Secret", f"{where}: Secrets are created from the environment, never committed"
        if kind == "ConfigMap":
            bad = [k for k in (doc.get("data") or {}) if names_a_secret(k)]
            assert not bad, f"{where}: secret-like keys in a ConfigMap: {bad}"
        for c in containers(doc):
            for var in c.get("env") or []:
                if names_a_secret(var["name"]):
                    assert "value" not in var and "secretKeyRef" in (var.get("valueFrom") or {}), \
                        f"{where}: {var['name']} must come from a Secret (valueFrom.secretKeyRef)"
            for arg in [*(c.get("command") or []), *(c.get("args") or [])]:
                assert not SECRET_NAME.search(str(arg).split("=", 1)[0]), f"{where}: secret in arguments: {arg}"
        if kind == "RayJob":
            env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"]).get("env_vars", {})
            bad = [k for k in env if SECRET_NAME.search(k)]
            assert not bad, f"{where}: runtimeEnvYAML carries secrets {bad}; use secretKeyRef / envFrom"
    for option in launcher()["docker"].get("run_options", []):
        name = option.split(None, 1)[1].split("=", 1)[0] if option.startswith("--env ") else option
        assert not names_a_secret(name), f"infra/ray-cluster.yaml: secret in docker run_options: {option}"
    for path in [*yaml_files(), INFRA / "README.md", INFRA / "Dockerfile"]:
        for pattern in SECRET_VALUE:
            match = pattern.search(path.read_text())
            assert match is None, f"{path.relative_to(REPO)}: looks like a secret literal: {match.group(0)!r}"


def test_secrets_referenced_are_documented() -> None:
    """Each Secret the pods read (env, mounted file, KubeRay's auth token) is created, with its keys, by the
    README's `kubectl create secret` commands."""
    refs: set[tuple[str, str | None]] = set()
    for _, doc in k8s_docs():
        for c in containers(doc):
            for var in c.get("env") or []:
                ref = (var.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
            refs |= {(e["secretRef"]["name"], None) for e in c.get("envFrom") or [] if "secretRef" in e}
    refs |= {(name, key) for name, key in SECRET_FILES.items() if name in mounted_secrets()}
    refs |= {(spec["authOptions"]["secretName"], "auth_token") for _, spec in ray_cluster_specs()
             if (spec.get("authOptions") or {}).get("secretName")}
    assert refs, "no pod reads a Secret"
    code = readme_code()
    for name, key in refs:
        assert re.search(rf"kubectl[^\n]*create secret generic {name}\b", code), f"README: create {name}?"
        if key:
            assert re.search(rf"--from-(literal|file)={re.escape(key)}=", code), f"README: {name} needs key {key}"
    assert mounted_secrets() <= SECRET_FILES.keys(), f"which file do {mounted_secrets() - SECRET_FILES.keys()} hold?"
