"""The training metrics CSV: a row with new columns widens the header, and a resumed run appends."""

from __future__ import annotations

from pathlib import Path

from tdmi.model.training.metrics_log import MetricsLog, read_metrics


def test_metrics_log_widens_its_header_and_keeps_rows(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "m.csv")
    log.write({"step": 1, "loss": 0.5})
    log.write({"step": 2, "val_mean_ap": 40.0})
    MetricsLog(tmp_path / "m.csv").write({"step": 3, "loss": 0.25})  # reopened, as on resume
    rows = read_metrics(tmp_path / "m.csv")
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert [r["loss"] for r in rows] == ["0.5", "", "0.25"] and rows[1]["val_mean_ap"] == "40"
