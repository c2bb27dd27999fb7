"""Which paths a ``.dockerignore`` keeps out of the build context, decided as Docker decides it.

Patterns are matched against the path and each of its parent directories (excluding a
directory excludes what is inside it), ``*`` and ``?`` stop at ``/``, ``**`` spans
directories, and the last matching pattern wins, ``!`` turning it into an inclusion.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["DockerIgnore"]


def _regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


class DockerIgnore:
    """The rules of one ``.dockerignore`` file."""

    def __init__(self, path: Path):
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = line.lstrip("!").strip().strip("/")
            self.rules.append((include, _regex(pattern)))

    def excludes(self, path: str) -> bool:
        """True when ``path`` (relative to the context, ``/``-separated) stays out of the context."""
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for include, regex in self.rules:
            if any(regex.match(prefix) for prefix in prefixes):
                excluded = not include
        return excluded
