"""The flags of ``tdmi serve`` and ``tdmi worker``, made from the ``Settings`` fields.

A setting is declared once, in ``tdmi.service.config``: its flag (``--max-batch`` for ``max_batch``),
help (the field's description), choices (a ``Literal``'s values) and bounds (checked as the
command line is read) come from there. A flag given wins over the environment, which wins over
the YAML file: the flags are the ``Settings`` constructor's arguments.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import SecretStr, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from tdmi.service.config import SECTIONS, Settings

__all__ = ["SETTINGS_HELP", "add_settings_flags", "settings_from_flags"]

# names the flags had before they were made from the settings, still accepted (scripts, README)
KEPT_NAMES = {"models": "--model", "redis_url": "--redis"}
_METAVARS: dict[Any, str] = {int: "INT", float: "NUMBER", Path: "PATH", str: "TEXT"}

SETTINGS_HELP = (
    "Each setting below is also read from the environment variable TDMI_<NAME> (--max-batch: "
    "TDMI_MAX_BATCH) and from the YAML file TDMI_SETTINGS_FILE names (key max_batch); a flag "
    "wins over the environment, the environment over the file. API keys are read from "
    "TDMI_API_KEYS and TDMI_ADMIN_API_KEYS only: a command line is visible to every user of "
    "the host."
)


def _options(annotation: Any) -> tuple[Any, bool]:
    """The type one flag value has, and whether the flag repeats: ``list[str] | None`` ->
    ``(str, True)``, ``int | None`` -> ``(int, False)``."""
    if get_origin(annotation) in (Union, types.UnionType):
        (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is list:
        return get_args(annotation)[0], True
    return annotation, False


def _is_secret(field: FieldInfo) -> bool:
    """API keys: never a flag, since a command line is visible to every user of the host."""
    return _options(field.annotation)[0] is SecretStr


def _parser(value_type: Any, field: FieldInfo, repeats: bool) -> Callable[[str], Any]:
    """A flag value's parser: the field's type with its bounds (a list's bounds are the list's,
    checked when the settings are made)."""
    metadata = [] if repeats else field.metadata
    if value_type is str and not metadata:
        return str
    adapter: TypeAdapter[Any] = TypeAdapter(Annotated[(value_type, *metadata)] if metadata else value_type)

    def parse(text: str) -> Any:
        try:
            return adapter.validate_python(text)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(exc.errors()[0]["msg"]) from None

    return parse


def _help(field: FieldInfo, repeats: bool) -> str:
    text = field.description or ""
    if repeats:
        text += " (repeatable)"
    default = field.default
    if field.default_factory is None and default is not None:  # a computed default is described
        if isinstance(default, bool):
            shown = str(default).lower()
        else:
            shown = f"{default:g}" if isinstance(default, float) else str(default)
        text += f" (default {shown})"
    return text.replace("%", "%%")  # argparse formats help with %


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per setting, in groups by section; a flag left out is None (the setting comes from
    the environment, the file or its default)."""
    group: argparse._ActionsContainer = parser  # SECTIONS names the first field: never used
    for name, field in Settings.model_fields.items():
        if name in SECTIONS:
            group = parser.add_argument_group(SECTIONS[name])
        if _is_secret(field):
            continue
        names = [f"--{name.replace('_', '-')}", *([KEPT_NAMES[name]] if name in KEPT_NAMES else [])]
        value_type, repeats = _options(field.annotation)
        if value_type is bool:
            group.add_argument(
                *names, dest=name, action=argparse.BooleanOptionalAction, help=_help(field, False)
            )
        elif get_origin(value_type) is Literal:
            group.add_argument(*names, dest=name, choices=get_args(value_type), help=_help(field, False))
        else:
            group.add_argument(
                *names,
                dest=name,
                type=_parser(value_type, field, repeats),
                action="append" if repeats else "store",
                metavar=_METAVARS[value_type],
                help=_help(field, repeats),
            )


def settings_from_flags(args: argparse.Namespace) -> Settings:
    """The settings, with the flags given over the environment and the file."""
    given = {
        name: value
        for name, value in vars(args).items()
        if name in Settings.model_fields and value is not None
    }
    return Settings(**given)
