"""``python -m bench <command>``: the benchmarks (BENCHMARKS.md), one command per question.

Each command prints a table, or JSON with ``--json``; each measures what it compares side by
side in one run.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "model": "clips/s per preset, variant (eager, bf16, compile, TorchScript, ONNX Runtime) and batch",
    "service": "a real server under N streams x K persons against the model and a naive baseline",
    "pipeline": "decode, detection, crop, model and post-processing, each alone",
    "cluster": "jobs/s with one worker against two over Redis, and the live latency Redis adds",
    "job": "a video job through a real server against a plain script doing the same steps in sequence",
    "peer": "our service next to the same model behind LitServe and the naive baseline",
    "tracking": "track ids on a real video, and MOTA and ID switches on synthetic video with ground truth",
    "sources": "RTSP cameras into one server: the most served at full frame rate, latency to 1 and 8 viewers",
    "soak": "minutes of live streams and jobs submitted and deleted: server RSS, open fds, data dir",
    "plots": "PNG plots from the JSON reports of the other commands",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    for name, help_text in COMMANDS.items():
        if name != chosen:  # only the command that runs is imported (torch and the service are slow to load)
            commands.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(f"bench.{name}")
        sub = commands.add_parser(
            name,
            help=help_text,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.main)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
