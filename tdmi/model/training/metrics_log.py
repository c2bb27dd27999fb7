"""A CSV log of training: one row per logged step or validation, one column per quantity.

Every loss term gets its own column, so the MI terms can be plotted next to the heatmap loss.
Rows may carry different columns (training rows have losses, validation rows have AP); when a
row brings a column the file does not have yet, the file is rewritten with the wider header
(logs are small: one row per ``log_every`` steps). Reopening a log appends to it, as a resumed
run does.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path

__all__ = ["MetricsLog", "read_metrics"]

Value = float | int | str | None


class MetricsLog:
    """Append rows of named values to a CSV file, widening its header when needed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.columns: list[str] = []
        if self.path.is_file() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as f:
                self.columns = next(csv.reader(f), [])

    def write(self, row: Mapping[str, Value]) -> None:
        new = [k for k in row if k not in self.columns]
        if new:
            self._widen(new)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: _format(v) for k, v in row.items()})

    def _widen(self, new: list[str]) -> None:
        rows = read_metrics(self.path) if self.columns else []
        self.columns = self.columns + new
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(rows)


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """All rows of a metrics log as dicts of strings (missing values are empty strings)."""
    with Path(path).open(newline="") as f:
        return [{k: v or "" for k, v in row.items()} for row in csv.DictReader(f)]


def _format(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)
