"""The test tree: tests/unit mirrors the packages, and no two test modules share a file name.

The test folders are not packages (no ``__init__.py``), so pytest imports each test module by its
bare file name: a second ``test_x.py`` anywhere under tests/ would fail collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
UNIT = TESTS / "unit"
PACKAGES = (ROOT / "tdmi", ROOT / "clients" / "tdmi")  # the server's and the SDK's parts of tdmi


def test_every_unit_folder_is_a_package_folder() -> None:
    folders = [p.relative_to(UNIT) for p in UNIT.rglob("*") if p.is_dir() and p.name != "__pycache__"]
    assert folders  # the walk found the tree
    unmatched = [str(f) for f in folders if not any((base / f).is_dir() for base in PACKAGES)]
    assert unmatched == []


def test_test_module_names_are_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
