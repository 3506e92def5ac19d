"""The dependency direction services ← fomm ← preprocessing ← evaluation ← animate ← training ← tuning ← pipelines,
read with ast; services (shared, ground floor) imports nothing of ours, and the pure model fomm does not use it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["services", "fomm", "preprocessing", "evaluation", "animate", "training", "tuning"]
THIRD_PARTY_ALLOWED_IN_FOMM = {"torch", "numpy", "yaml"}
# fomm/cli.py is the command line: it may reach the I/O packages and the shared services, lazily (inside functions)
LAZY_EXCEPTIONS = {("fomm/cli.py", "preprocessing"), ("fomm/cli.py", "evaluation"), ("fomm/cli.py", "animate"),
                   ("fomm/cli.py", "services")}
# the ONNX engine (the `export` extra) may reach ONNX Runtime, lazily
LAZY_THIRD_PARTY_IN_FOMM = {("fomm/onnx_export.py", "onnxruntime"), ("fomm/cli.py", "onnxruntime")}


def imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level?) for every import in the file."""
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module.split(".")[0], id(node) in top_level))
    return found


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ORDER)
def test_packages_import_only_downstream(package):
    allowed = set(ORDER[: ORDER.index(package) + 1])
    for path in package_files(package):
        rel = path.relative_to(ROOT).as_posix()
        for module, at_top in imports(path):
            if module in ORDER and module not in allowed:
                assert (rel, module) in LAZY_EXCEPTIONS and not at_top, f"{rel} imports {module}"


def test_fomm_model_does_not_use_services():
    for path in package_files("fomm"):
        rel = path.relative_to(ROOT).as_posix()
        for module, at_top in imports(path):
            if module == "services":
                assert rel == "fomm/cli.py" and not at_top, f"{rel} imports services"


def test_fomm_uses_only_torch_numpy_yaml():
    import sys

    stdlib = set(sys.stdlib_module_names)
    for path in package_files("fomm"):
        rel = path.relative_to(ROOT).as_posix()
        for module, at_top in imports(path):
            if module in stdlib or module in ORDER or module == "__future__":
                continue
            if (rel == "fomm/cli.py" or (rel, module) in LAZY_THIRD_PARTY_IN_FOMM) and not at_top:
                continue
            assert module in THIRD_PARTY_ALLOWED_IN_FOMM, f"{rel} imports {module}"


def test_mlflow_only_in_tracking_module():
    for package in ORDER + ["pipelines", "benchmarks"]:
        for path in package_files(package):
            rel = path.relative_to(ROOT).as_posix()
            if any(m == "mlflow" for m, _ in imports(path)):
                assert rel.startswith("services/tracking/"), f"{rel} imports mlflow"


def test_ray_train_only_in_training_and_tuning():
    for package in ("fomm", "preprocessing", "evaluation"):
        for path in package_files(package):
            text = path.read_text()
            assert "ray.train" not in text and "ray.tune" not in text, path
    for path in package_files("fomm"):
        assert "import ray" not in path.read_text(), path
