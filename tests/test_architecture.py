"""The one-way import rule: model and protocol import nothing of ours; clients only protocol.

Our code imports itself as ``tdmi.<name>``; the folder of ``tdmi.client`` is ``clients``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
OURS = {"model", "service", "protocol", "clients"}
FOLDERS = {
    "tdmi.model": "model",
    "tdmi.service": "service",
    "tdmi.protocol": "protocol",
    "tdmi.client": "clients",
}
ALLOWED = {
    "model": {"model"},
    "protocol": {"protocol"},
    "clients": {"clients", "protocol"},
    "service": OURS - {"clients"},
}


def _folder(module: str) -> str:
    """The repository folder of an imported module of ours (``tdmi.client.cli`` -> ``clients``)."""
    return FOLDERS.get(".".join(module.split(".")[:2]), module.split(".")[0])


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {_folder(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(_folder(node.module))
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_go_one_way(package: str) -> None:
    files = list((ROOT / package).rglob("*.py"))
    assert files
    violations = {
        str(f.relative_to(ROOT)): sorted(bad)
        for f in files
        if (bad := _imported_packages(f) - ALLOWED[package])
    }
    assert violations == {}
