"""The one-way import rule: model and protocol import nothing of ours; the client only protocol.

Our code imports itself only as ``tdmi.<package>``: a bare ``import model`` (the folder names of
an older layout) would work in a checkout with the wrong path and nowhere else.

Inside the service, its parts (``tdmi.service.<part>``: a subpackage or a top-level module)
import each other without a cycle, and its subpackages in one order of layers (``LAYERS``): a
cycle means neither side can be understood, tested or changed without the other."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FOLDERS = {
    "tdmi.model": ROOT / "tdmi" / "model",
    "tdmi.service": ROOT / "tdmi" / "service",
    "tdmi.protocol": ROOT / "clients" / "tdmi" / "protocol",
    "tdmi.client": ROOT / "clients" / "tdmi" / "client",
}
ALLOWED = {
    "tdmi.model": {"tdmi.model"},
    "tdmi.protocol": {"tdmi.protocol"},
    "tdmi.client": {"tdmi.client", "tdmi.protocol"},
    "tdmi.service": {"tdmi.model", "tdmi.service", "tdmi.protocol"},
}
BARE = {"model", "service", "protocol", "client", "clients"}
SERVICE = FOLDERS["tdmi.service"]
# the service's subpackages, lowest first: each imports only those before it (top-level modules
# such as config, errors, faults, loops may be imported by any); main and cli put it all together
LAYERS = (
    "detection",
    "weights",
    "inference",
    "streaming",
    "video",
    "jobs",
    "cluster",
    "sources",
    "nodes",
    "api",
    "main",
    "cli",
)


def _imports(path: Path) -> list[str]:
    """Every absolute module name ``path`` imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _package(module: str) -> str | None:
    """``tdmi.service.api.jobs`` -> ``tdmi.service``; None for anything not ours."""
    top = ".".join(module.split(".")[:2])
    return top if top in FOLDERS else None


def _python_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_go_one_way(package: str) -> None:
    files = _python_files(FOLDERS[package])
    assert files
    violations = {
        str(f.relative_to(ROOT)): sorted(bad)
        for f in files
        if (bad := {p for m in _imports(f) if (p := _package(m))} - ALLOWED[package])
    }
    assert violations == {}


def test_no_code_imports_our_folders_by_bare_names() -> None:
    checked = [ROOT / "bench", ROOT / "tests", *FOLDERS.values()]
    files = [f for folder in checked for f in _python_files(folder)]
    bare = {
        str(f.relative_to(ROOT)): sorted(b)
        for f in files
        if (b := {m for m in _imports(f) if m.split(".")[0] in BARE})
    }
    assert bare == {}


def test_the_rule_sees_a_bare_import(tmp_path: Path) -> None:
    """The checks above would pass on an empty tree: show them a violation of each kind."""
    source = tmp_path / "x.py"
    source.write_text("import model.hrnet\nfrom tdmi.service import cli\nfrom . import sibling\n")
    assert _imports(source) == ["model.hrnet", "tdmi.service"]
    assert _package("tdmi.service.cli") == "tdmi.service" and _package("model.hrnet") is None


def _service_imports(path: Path, module: str) -> list[str]:
    """Every module and name the file ``path`` (the module ``module``) imports, relative imports
    made absolute: ``from ..cluster import keys`` in ``tdmi.service.jobs.x`` is
    ``tdmi.service.cluster.keys``."""
    package = module.split(".")[:-1]  # a package's __init__ is named after the package itself
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *([node.module] if node.module else [])])
            found += [f"{origin}.{alias.name}" for alias in node.names]
    return found


def _part(module: str) -> str | None:
    """``tdmi.service.jobs.runner.JobRunner`` -> ``jobs``; None outside the service."""
    parts = module.split(".")
    return parts[2] if parts[:2] == ["tdmi", "service"] and len(parts) > 2 else None


def _service_graph() -> dict[str, set[str]]:
    """Which parts of the service each part imports."""
    graph: dict[str, set[str]] = {}
    for path in _python_files(SERVICE):
        relative = path.relative_to(SERVICE).with_suffix("")
        source = relative.parts[0]
        module = ".".join(["tdmi", "service", *relative.parts])
        imported = {p for m in _service_imports(path, module) if (p := _part(m)) is not None}
        graph.setdefault(source, set()).update(imported - {source})
    return graph


def _cycle(graph: Mapping[str, set[str]]) -> list[str]:
    """One cycle of ``graph``, its first node repeated at the end; [] when it has none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        path.append(node)
        for following in sorted(graph.get(node, ())):
            if found := visit(following):
                return found
        path.pop()
        done.add(node)
        return []

    for node in sorted(graph):
        if found := visit(node):
            return found
    return []


def test_the_service_parts_import_each_other_without_a_cycle() -> None:
    graph = _service_graph()
    assert {"nodes", "cluster", "jobs", "api", "errors"} <= graph.keys()
    assert _cycle(graph) == []


def test_the_service_subpackages_import_only_lower_layers() -> None:
    graph = _service_graph()
    folders = {p.parent.relative_to(SERVICE).parts[0] for p in _python_files(SERVICE) if p.parent != SERVICE}
    assert folders <= set(LAYERS), "a new subpackage needs its place in LAYERS"
    upwards = {
        part: sorted(above)
        for part in LAYERS
        if (above := {i for i in graph.get(part, ()) if i in LAYERS and LAYERS.index(i) > LAYERS.index(part)})
    }
    assert upwards == {}


def test_the_checks_see_a_cycle_and_a_relative_import(tmp_path: Path) -> None:
    """The checks above would pass on an empty graph: show them a cycle and hidden imports."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    source = tmp_path / "x.py"
    source.write_text("from ..cluster import keys\nfrom . import runner\nfrom tdmi.service import cli\n")
    found = _service_imports(source, "tdmi.service.jobs.x")
    assert found == ["tdmi.service.cluster.keys", "tdmi.service.jobs.runner", "tdmi.service.cli"]
    assert [_part(m) for m in found] == ["cluster", "jobs", "cli"]
