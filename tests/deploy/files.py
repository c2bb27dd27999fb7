"""Readers for the deployment files: compose files, Kubernetes manifests, redis.conf, env files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "REPO",
    "Reset",
    "compose_default",
    "env_file_lines",
    "load_compose",
    "load_manifests",
    "redis_directives",
    "seconds",
]

REPO = Path(__file__).resolve().parents[2]
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


class Reset:
    """A compose ``!reset``/``!override`` tag (Compose 2.24+): the value replaces instead of merging."""

    def __init__(self, tag: str, value: Any):
        self.tag = tag
        self.value = value


class _ComposeLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus the two tags compose adds to YAML."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    if isinstance(node, yaml.SequenceNode):
        value: Any = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected {node.tag} node", node.start_mark)
    return Reset(node.tag, value)


for _tag in ("!reset", "!override"):
    _ComposeLoader.add_constructor(_tag, _tagged)


def load_compose(path: Path) -> dict[str, Any]:
    """A compose file as data (merge keys resolved, ``x-`` anchors expanded)."""
    data = yaml.load(path.read_text(), Loader=_ComposeLoader)  # a SafeLoader with two more tags
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


def load_manifests(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes object in ``directory``/*.yaml, keyed by (kind, name)."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            key = (document["kind"], document["metadata"]["name"])
            assert key not in objects, f"{path}: {key} defined twice"
            objects[key] = document
    return objects


def compose_default(value: str) -> str:
    """A compose string with each ``${NAME:-default}`` replaced by its default (what runs when unset)."""

    def default(match: re.Match[str]) -> str:
        if match.group(2) is None:
            raise ValueError(f"{value!r}: ${{{match.group(1)}}} has no default")
        return match.group(2)

    return _INTERPOLATION.sub(default, value)


def seconds(duration: str) -> float:
    """A compose duration (``60s``, ``1m30s``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(float(number) * units[unit] for number, unit in parts)


def redis_directives(path: Path) -> dict[str, list[str]]:
    """redis.conf as {directive: arguments} (one value per directive: ours repeat none)."""
    directives: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, *arguments = line.split()
            assert name.lower() not in directives, f"{path}: {name} given twice"
            directives[name.lower()] = arguments
    return directives


def env_file_lines(path: Path, *, commented: bool) -> dict[str, str]:
    """``NAME=value`` lines of an env file: the active ones, or the ``# NAME=value`` examples."""
    pattern = re.compile(r"#\s*(TDMI_\w+)=(.*)" if commented else r"(TDMI_\w+)=(.*)")
    lines: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        if match := pattern.fullmatch(raw.strip()):
            lines[match.group(1)] = match.group(2)
    return lines
