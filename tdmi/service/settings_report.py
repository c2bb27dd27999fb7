"""The settings as a person reads them, ``name = value``: at start-up only those that differ from
their defaults (a few lines instead of every knob), ``tdmi serve --print-settings`` all of them by
section. Values come from ``Settings.public``: API keys are counted, never shown.

``python -m tdmi.service.settings_report`` prints every setting as a Markdown table (name,
environment variable, default, what it does), the one in docs/settings.md: a test keeps the two
equal, so the reference cannot fall behind the ``Settings`` class."""

from __future__ import annotations

from typing import Any

from pydantic_core import PydanticUndefined

from tdmi.service.config import SECTIONS, Settings

__all__ = ["all_settings", "changed_settings", "settings_table"]


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) if value else "none"
    return str(value)


def changed_settings(settings: Settings) -> list[str]:
    """``name = value`` for each setting whose value is not its default."""
    defaults = Settings.model_construct().public()  # the defaults alone: no environment, file or flag
    shown = settings.public()
    return [
        f"{name} = {_shown(shown[name])}" for name in Settings.model_fields if shown[name] != defaults[name]
    ]


def all_settings(settings: Settings) -> list[str]:
    """Every setting, ``name = value``, under a ``# section`` line per section."""
    shown = settings.public()
    lines: list[str] = []
    for name in Settings.model_fields:
        if name in SECTIONS:
            lines += [*([""] if lines else []), f"# {SECTIONS[name]}"]
        lines.append(f"{name} = {_shown(shown[name])}")
    return lines


def _default(name: str) -> str:
    """A field's default as the table shows it; defaults computed on the host (paths, host name,
    the demo checkpoint's place) are named so, since the table must read the same everywhere."""
    field = Settings.model_fields[name]
    if field.default_factory is list:
        return "none"
    if field.default_factory is not None or field.default is PydanticUndefined:
        return "(computed on the host)"
    return _shown(field.default)


def settings_table() -> str:
    """Every setting as Markdown: one table, a bold row at the start of each section."""
    rows = ["| setting | environment | default | what |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        if name in SECTIONS:
            rows.append(f"| **{SECTIONS[name]}** | | | |")
        what = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | `TDMI_{name.upper()}` | `{_default(name)}` | {what} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
