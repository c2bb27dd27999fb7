"""The Dockerfile's instructions by stage, for the project's own rules (``test_dockerfile.py``).

hadolint parses and lints the file; this reader only hands those rules what they look at:
continuation lines joined, comment lines dropped, a heredoc's body kept, global build
arguments for ``FROM``, and the stages one variant's image is built from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Dockerfile", "Instruction", "Stage"]

_HEREDOC = re.compile(r"<<-?(['\"]?)([A-Za-z_]+)\1")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    arguments: str  # one line
    line: int
    heredoc: str = ""


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


class Dockerfile:
    def __init__(self, text: str):
        self.instructions = _instructions(text.splitlines())
        self.global_args: dict[str, str] = {}  # ARGs before the first FROM
        self.stages: list[Stage] = []
        for instruction in self.instructions:
            if instruction.keyword == "FROM":
                base, _, name = instruction.arguments.partition(" AS ")
                self.stages.append(Stage(base.strip(), name.strip() or None))
            elif self.stages:
                self.stages[-1].instructions.append(instruction)
            else:
                key, _, default = instruction.arguments.partition("=")
                self.global_args[key] = default

    def stage(self, name: str) -> Stage:
        (stage,) = [s for s in self.stages if s.name == name]
        return stage

    def chain(self, variant: str) -> list[Stage]:
        """The stages the image is built from with ``VARIANT=variant``, the external base first."""
        values = {**self.global_args, "VARIANT": variant}
        named = {s.name: s for s in self.stages}
        chain = [self.stages[-1]]
        while (base := named.get(self.resolve(chain[0].base, values))) is not None:
            chain.insert(0, base)
        return chain

    @staticmethod
    def resolve(text: str, values: dict[str, str]) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)


def _instructions(lines: list[str]) -> list[Instruction]:
    out, i = [], 0
    while i < len(lines):
        start, parts = i + 1, [lines[i].strip()]
        i += 1
        if not parts[0] or parts[0].startswith("#"):
            continue
        while parts[-1].endswith("\\"):
            parts[-1] = parts[-1][:-1].strip()
            while lines[i].strip().startswith("#"):  # a comment inside a continuation
                i += 1
            parts.append(lines[i].strip())
            i += 1
        keyword, _, arguments = " ".join(p for p in parts if p).partition(" ")
        body = ""
        if (heredoc := _HEREDOC.search(arguments)) is not None:
            end = lines.index(heredoc.group(2), i)
            body, i = "\n".join(lines[i:end]) + "\n", end + 1
        out.append(Instruction(keyword.upper(), arguments.strip(), start, body))
    return out
