"""The report every benchmark prints: a header (date, command, device, versions), tables, or JSON."""

from __future__ import annotations

import datetime
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from bench.hardware import describe_device, software_versions

__all__ = ["emit", "print_table", "report_header"]


def report_header(bench: str, device: torch.device) -> dict[str, Any]:
    """When, how and on what a report was measured: the first keys of every JSON output."""
    return {
        "bench": bench,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "device": describe_device(device),
        "device_type": device.type,
        "software": software_versions(),
    }


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned text table; floats keep 3 significant digits (2 decimals when large)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.2f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def emit(report: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], None]) -> None:
    """Print ``report`` as JSON, or its header lines and then the tables that ``render`` prints."""
    if as_json:
        json.dump(report, sys.stdout, indent=1, allow_nan=False)
        print()
        return
    for key in ("date", "command", "device"):
        print(f"{key}: {report[key]}")
    print("software: " + ", ".join(f"{k} {v}" for k, v in report["software"].items()))
    render(report)
