"""``python -m bench plots``: PNG plots from the JSON reports of ``bench model`` and ``bench service``.

    python -m bench model --json > model.json && python -m bench service --json > service.json
    python -m bench plots --model-json model.json --service-json service.json [more.json ...] --out docs/bench

Throughput against batch size (one panel per preset, one line per variant) and latency
percentiles against offered load (one colour per service run, e.g. per backend). Each plot's
title names the device and the date.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

__all__ = ["add_arguments", "latency_plot", "main", "throughput_plot"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-json", type=Path, help="output of python -m bench model --json")
    parser.add_argument(
        "--service-json",
        type=Path,
        nargs="+",
        help="outputs of python -m bench service --json (one line each)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/bench"), help="folder for the PNG files")
    parser.add_argument("--json", action="store_true", help="print the written paths as JSON")


def main(args: argparse.Namespace) -> None:
    if not args.model_json and not args.service_json:
        raise SystemExit("plots: give --model-json and/or --service-json")
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    if args.model_json:
        written.append(throughput_plot(_read(args.model_json), args.out))
    if args.service_json:
        written.append(latency_plot([_read(path) for path in args.service_json], args.out))
    if args.json:
        print(json.dumps({"written": [str(p) for p in written]}))
    else:
        print("\n".join(str(p) for p in written))


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"plots: cannot read {path}: {exc}") from None


def throughput_plot(report: dict[str, Any], out: Path) -> Path:
    """Clips/s against batch size, log-log, one panel per preset."""
    presets = list(report["flops_per_clip"])
    fig, axes = plt.subplots(1, len(presets), figsize=(6 * len(presets), 4.5), squeeze=False)
    for ax, preset in zip(axes[0], presets):
        rows = [r for r in report["rows"] if r["preset"] == preset]
        for variant in dict.fromkeys(r["variant"] for r in rows):
            points = sorted((r["batch"], r["clips_per_s"]) for r in rows if r["variant"] == variant)
            ax.plot(*zip(*points), marker="o", label=variant)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size (clips)")
        ax.set_ylabel("clips per second")
        ax.set_title(f"{preset}: {report['flops_per_clip'][preset] / 1e9:.3g} GFLOPs/clip")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"bench model, {report['device']}, {report['date'][:10]}", fontsize=9)
    fig.tight_layout()
    path = out / f"throughput_vs_batch_{report['device_type']}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_plot(reports: list[dict[str, Any]], out: Path) -> Path:
    """p50 and p95 latency against offered frames/s, one colour per service run (its saturation
    point last), with each load level's p95 target."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for report, colour in zip(reports, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        s = report["settings"]
        label = f"{s['backend']} {s['precision']}, max batch {s['max_batch']}"
        levels = [*report["loads"], report["saturation"]]
        xs = [lv.get("offered_frames_per_s", lv["frames_per_s"]) for lv in levels]
        ax.plot(xs, [lv["latency_ms"]["p50"] for lv in levels], "o-", color=colour, label=f"{label}: p50")
        ax.plot(xs, [lv["latency_ms"]["p95"] for lv in levels], "s--", color=colour, label=f"{label}: p95")
        targets = [(lv["offered_frames_per_s"], lv["target_p95_ms"]) for lv in report["loads"]]
        if targets:
            ax.plot(*zip(*targets), ":", color=colour, alpha=0.6, label=f"{label}: p95 target")
    s = reports[0]["settings"]
    ax.set_xlabel("offered frames per second, all streams (last point: saturation, closed loop)")
    ax.set_ylabel("latency, frame sent to result received (ms)")
    ax.set_yscale("log")
    ax.set_title(
        f"{s['model']}, {s['streams']} streams x {s['persons']} persons, lookahead {s['lookahead']}",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"bench service, {reports[0]['device']}, {reports[0]['date'][:10]}", fontsize=9)
    fig.tight_layout()
    path = out / f"latency_vs_load_{reports[0]['device_type']}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
