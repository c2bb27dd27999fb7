"""The one-way import rule: model and protocol import nothing of ours; the client only protocol.

Our code imports itself only as ``tdmi.<package>``: a bare ``import model`` (the folder names of
an older layout) would work in a checkout with the wrong path and nowhere else."""

from __future__ import annotations

import ast
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
