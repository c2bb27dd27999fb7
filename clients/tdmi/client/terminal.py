"""What every ``tdmi-client`` command shares: its client, one-line messages on stderr, output
lines on stdout that meet a closed pipe, JSON output, positive numbers as arguments."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tdmi.client.client import PoseClient

__all__ = ["StdoutClosed", "client_for", "out", "positive", "say", "write_json"]


def say(message: str) -> None:
    print(f"tdmi-client: {message}", file=sys.stderr)


class StdoutClosed(Exception):
    """The reader of stdout went away (``tdmi-client models --json | head``): the end of the
    output, not an error to report."""


def out(text: str) -> None:
    """``text`` and a newline to stdout, written through, so that a closed pipe is met here."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


def client_for(args: argparse.Namespace) -> PoseClient:
    return PoseClient(args.url, api_key=args.api_key, timeout=args.timeout)


def write_json(data: Any, to: Path | None) -> None:
    """One line on stdout, or an indented file."""
    text = json.dumps(data, indent=None if to is None else 1)
    if to is None:
        out(text)
    else:
        to.write_text(text + "\n")


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: ``kind`` of the text, above 0."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse
