"""The settings as a person reads them: the changed ones at start-up, every one with
``--print-settings``, API keys counted, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdmi.service.cli import main
from tdmi.service.config import Settings
from tdmi.service.settings_report import changed_settings, settings_table

DOCS = Path(__file__).resolve().parents[3] / "docs" / "settings.md"


def test_start_up_names_only_the_settings_that_differ_from_their_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TDMI_BACKEND", raising=False)  # tests/conftest.py pins torch
    monkeypatch.setenv("TDMI_API_KEYS", '["top-secret"]')
    changed = changed_settings(Settings(max_batch=3, detector="hog", lookahead=None, cpu_threads=None))
    assert changed == ["max_batch = 3", "detector = hog", "api_keys = 1 configured"]
    assert changed_settings(Settings()) == ["api_keys = 1 configured"]


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_print_settings_lists_every_setting_and_starts_nothing(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDMI_ADMIN_API_KEYS", '["top-secret"]')
    data_dir = tmp_path / "data"
    assert main([command, "--print-settings", "--data-dir", str(data_dir), "--max-batch", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    named = {line.partition(" = ")[0] for line in lines if " = " in line}
    assert named == set(Settings.model_fields)
    assert {"max_batch = 3", f"data_dir = {data_dir}", "admin_api_keys = 1 configured"} <= set(lines)
    assert "top-secret" not in "\n".join(lines)
    assert "# batching" in lines  # grouped by the sections of `tdmi serve --help`
    assert not data_dir.exists()  # no lock taken, no model loaded: a worker needs no --redis either


def test_the_settings_reference_is_the_settings_class() -> None:
    """docs/settings.md holds the generated table as it is now: every field, its variable and its
    description; a setting added, renamed or redescribed without regenerating fails here."""
    text = DOCS.read_text()
    begin, end = "<!-- settings table: begin -->\n", "<!-- settings table: end -->"
    documented = text[text.index(begin) + len(begin) : text.index(end)]
    assert documented == settings_table(), "regenerate: python -m tdmi.service.settings_report"
    for name in Settings.model_fields:
        assert f"| `{name}` | `TDMI_{name.upper()}` |" in documented
    assert "/home/" not in documented and "/root" not in documented  # nothing of this host
