"""Text a client controls, made safe to show in an answer or a log line.

Two bounds, each a single linear pass: :func:`shorten` cuts a value at a length and says how much
was left out, and :func:`escape_controls` writes every control character as an escape (C0 and
C1 controls, DEL, the Unicode line and paragraph separators, the bidirectional embeddings,
overrides and isolates, and lone surrogates), so that a value can neither start a line of its
own, nor move a terminal's cursor, nor reorder the text around it, nor fail to encode.
"""

from __future__ import annotations

import re

__all__ = ["escape_controls", "shorten", "shown"]

_CONTROL_CLASS = "\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_CONTROLS = re.compile(f"[\n{_CONTROL_CLASS}]")
_CONTROLS_BUT_NEWLINE = re.compile(f"[{_CONTROL_CLASS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """``text`` with its control characters written as ``\\n``, ``\\x1b``, ``\\u2028``, ...;
    ``keep_newlines`` leaves line feeds alone (for a traceback, whose lines are its shape)."""
    return (_CONTROLS_BUT_NEWLINE if keep_newlines else _CONTROLS).sub(_escape, text)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with a marker that counts the rest."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters]"


def shown(text: str, limit: int = 128) -> str:
    """A client's value as an answer or a log line may carry it: cut, then escaped."""
    return escape_controls(shorten(text, limit))
