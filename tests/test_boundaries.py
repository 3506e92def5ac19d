"""The house, read from the real import graph (ast, lazy imports included): each package imports only the floors
named below it, siblings not at all; no two modules import each other, even through others; and no module names
a module of another package in a string (importlib, `__import__`, "module:Class" tables), which the graph would
not see."""

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ["services", "fomm", "preprocessing", "evaluation", "animate", "training", "tuning"]
# what each package may import of ours; animate and training are siblings (neither imports the other)
FLOORS = {
    "services": set(),  # the ground floor
    "fomm": set(),  # the model stands alone (torch, numpy, yaml)
    "preprocessing": {"services", "fomm"},
    "evaluation": {"services", "fomm", "preprocessing"},
    "animate": {"services", "fomm", "preprocessing", "evaluation"},
    "training": {"services", "fomm", "preprocessing", "evaluation"},
    "tuning": {"services", "fomm", "preprocessing", "evaluation", "training"},
    "pipelines": set(PRODUCT),  # the top floor: entry points
    "benchmarks": set(PRODUCT),  # beside pipelines: measurements over the product
}
ORDER = PRODUCT  # the packages whose files the tests below read
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


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph() -> dict[str, set[str]]:
    """Each of our modules → the modules of ours it imports (`from a import b` counts as a.b when b is a module)."""
    files = {module_name(p): p for package in FLOORS for p in package_files(package)}
    graph = {}
    for name, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wanted = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                wanted = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in wanted:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_package_has_a_floor() -> None:
    ours = {p.name for p in ROOT.iterdir() if p.is_dir() and any(p.glob("*.py"))} - {"tests"}
    assert ours == set(FLOORS), f"packages without a floor: {sorted(ours - set(FLOORS))}"


@pytest.mark.parametrize("package", list(FLOORS))
def test_packages_import_only_their_floors(package):
    allowed = FLOORS[package] | {package}
    for path in package_files(package):
        rel = path.relative_to(ROOT).as_posix()
        for module, _ in imports(path):
            assert module not in FLOORS or module in allowed, f"{rel} imports {module}"


def test_the_floors_have_no_cycle() -> None:
    by_package = {p: FLOORS[p] for p in FLOORS}
    assert cycles(by_package) == []


def test_no_two_modules_import_each_other() -> None:
    assert cycles(module_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


DOTTED = re.compile(rf"^({'|'.join(FLOORS)})(\.\w+)+(:\w+)?$")


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return {id(n.body[0].value) for n in nodes if n.body and isinstance(n.body[0], ast.Expr)}


@pytest.mark.parametrize("package", list(FLOORS))
def test_no_string_names_a_module_of_another_package(package) -> None:
    """A string that is a dotted name of ours ("training.job:TrainJob", f"fomm.{name}") stays in its package:
    across floors, modules are imported by name, so the graph above sees them."""
    modules = set(module_graph())
    for path in package_files(package):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                m = DOTTED.match(node.value)  # a module of ours by name (an MLflow tag "fomm.kind" is none)
                named = m and node.value.split(":")[0] in modules
                assert not named or m.group(1) == package, f"{rel}:{node.lineno} names {node.value!r} in a string"
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in ("import_module", "__import__") and node.args:
                    arg = node.args[0]
                    head = arg.values[0] if isinstance(arg, ast.JoinedStr) and arg.values else arg
                    text = head.value if isinstance(head, ast.Constant) and isinstance(head.value, str) else ""
                    first = re.split(r"[.:]", text)[0]
                    assert first in ("", package) or first not in FLOORS, \
                        f"{rel}:{node.lineno} imports {text!r} by name"


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


MAX_MODULE_LINES = 300  # small modules, one concept each


def test_no_module_is_over_300_lines():
    """A module past this has grown a second concept: split it along that seam."""
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for package in [*ORDER, "pipelines"] for p in package_files(package)
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, f"over {MAX_MODULE_LINES} lines: {', '.join(long)}"
