"""A small Dockerfile reader, so the image's rules can be checked without a Docker engine.

It knows what our Dockerfile uses: comments, line continuations, heredocs, global build
arguments in ``FROM``, named stages and stages built on other stages. It is not a full
BuildKit front end; the tests fail loudly on anything it cannot place.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

__all__ = ["Dockerfile", "Instruction", "Stage"]

_HEREDOC = re.compile(r"<<-?(['\"]?)([A-Za-z_]+)\1")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword upper-cased, its arguments as one line, a heredoc body if any."""

    keyword: str
    arguments: str
    line: int
    heredoc: str = ""

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, or None in shell form."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD ") + 4 :].strip() if "CMD " in text else ""
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    def flags(self) -> dict[str, str]:
        """``--name=value`` options before the arguments (``--mount``, ``--from``, ``--interval``)."""
        out: dict[str, str] = {}
        for word in shlex.split(self.arguments, posix=True):
            if not word.startswith("--"):
                break
            key, _, value = word[2:].partition("=")
            out[key] = value
        return out


@dataclass
class Stage:
    """A ``FROM base [AS name]`` and the instructions up to the next ``FROM``."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


class Dockerfile:
    """The stages of a Dockerfile, with the global ``ARG`` defaults used to resolve ``FROM``."""

    def __init__(self, text: str):
        self.instructions = _parse(text)
        self.global_args: dict[str, str] = {}
        self.stages: list[Stage] = []
        for instruction in self.instructions:
            if instruction.keyword == "FROM":
                words = instruction.arguments.split()
                name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
                self.stages.append(Stage(base=words[0], name=name))
            elif not self.stages:
                if instruction.keyword != "ARG":
                    raise ValueError(f"line {instruction.line}: only ARG may come before the first FROM")
                key, _, default = instruction.arguments.partition("=")
                self.global_args[key.strip()] = default.strip()
            else:
                self.stages[-1].instructions.append(instruction)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name}")

    def resolve(self, text: str, build_args: dict[str, str] | None = None) -> str:
        """``text`` with ``$NAME``/``${NAME}`` replaced by global build arguments (defaults overridden)."""
        values = {**self.global_args, **(build_args or {})}

        def substitute(match: re.Match[str]) -> str:
            key = match.group(1) or match.group(2)
            if key not in values:
                raise KeyError(f"build argument {key} is not declared before the first FROM")
            return values[key]

        return _VARIABLE.sub(substitute, text)

    def chain(self, build_args: dict[str, str] | None = None, target: str | None = None) -> list[Stage]:
        """The stages a target is built from, outermost first (default target: the last stage)."""
        stage = self.stage(target) if target else self.stages[-1]
        chain = [stage]
        names = {s.name for s in self.stages if s.name}
        while (base := self.resolve(chain[0].base, build_args)) in names:
            chain.insert(0, self.stage(base))
        return chain

    def base_image(self, build_args: dict[str, str] | None = None, target: str | None = None) -> str:
        """The external image a target starts from."""
        return self.resolve(self.chain(build_args, target)[0].base, build_args)


def _parse(text: str) -> list[Instruction]:
    """Instructions with continuations joined, comment lines dropped and heredoc bodies attached."""
    lines = text.splitlines()
    instructions: list[Instruction] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        start = i + 1
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = [stripped]
        while parts[-1].endswith("\\"):
            parts[-1] = parts[-1][:-1].rstrip()
            while i < len(lines) and lines[i].strip().startswith("#"):  # comments inside a continuation
                i += 1
            if i == len(lines):
                raise ValueError(f"line {start}: continuation runs past the end of the file")
            parts.append(lines[i].strip())
            i += 1
        keyword, _, arguments = " ".join(p for p in parts if p).partition(" ")
        body = ""
        if (heredoc := _HEREDOC.search(arguments)) is not None:
            end = next((j for j in range(i, len(lines)) if lines[j].strip() == heredoc.group(2)), None)
            if end is None:
                raise ValueError(f"line {start}: heredoc {heredoc.group(2)} is never closed")
            body = "\n".join(lines[i:end]) + "\n"
            i = end + 1
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start, body))
    return instructions
