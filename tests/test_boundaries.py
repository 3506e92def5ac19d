"""The dependency direction services ← fomm ← preprocessing ← evaluation ← animate ← training ← tuning ← pipelines,
read with ast; services (shared, ground floor) imports nothing of ours, and the pure model fomm does not use it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["services", "fomm", "preprocessing", "evaluation", "animate", "training", "tuning"]
THIRD_PARTY_ALLOWED_IN_FOMM = {"torch", "numpy", "yaml"}


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
        for module, _ in imports(path):
            assert module not in ORDER or module in allowed, f"{rel} imports {module}"


def test_fomm_model_does_not_use_services():
    for path in package_files("fomm"):
        rel = path.relative_to(ROOT).as_posix()
        for module, _ in imports(path):
            assert module != "services", f"{rel} imports services"


def test_fomm_uses_only_torch_numpy_yaml():
    import sys

    stdlib = set(sys.stdlib_module_names)
    for path in package_files("fomm"):
        rel = path.relative_to(ROOT).as_posix()
        for module, _ in imports(path):
            assert module in stdlib | THIRD_PARTY_ALLOWED_IN_FOMM | {"fomm", "__future__"}, f"{rel} imports {module}"


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


STORAGE_LIBRARIES = ("fsspec", "s3fs", "pyarrow.fs")


def test_storage_libraries_and_ray_start_only_in_services():
    """Filesystems come from services.storage (one resolution, retries counted), Ray from services.ray_start."""
    for package in [*ORDER, "pipelines", "benchmarks"]:
        for path in package_files(package):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("services/"):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                bad = [n for n in names if any(n == lib or n.startswith(lib + ".") for lib in STORAGE_LIBRARIES)]
                assert not bad, f"{rel}:{node.lineno} imports {bad[0]} (use services.storage)"
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "init":
                    owner = node.func.value
                    assert not (isinstance(owner, ast.Name) and owner.id == "ray"), \
                        f"{rel}:{node.lineno} calls ray.init (use services.ray_start.ensure_ray)"
