"""``tdmi``: the one command line of the project (model tools and the service)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, Literal

from tdmi.model.cli import add_model_commands
from tdmi.service.weights.cli import add_weights_command

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> Any:
    """Settings from the environment, overridden by the flags given."""
    from tdmi.service.config import Settings

    overrides = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "base_port": args.base_port,
            "device": args.device,
            "backend": args.backend,
            "detector": args.detector,
            "data_dir": args.data_dir,
            "models": args.model,
            "redis_url": args.redis,
            "worker_id": getattr(args, "worker_id", None),
            "insecure": args.insecure or None,
        }.items()
        if value is not None
    }
    return Settings(**overrides)


def _check_weights(settings: Any, loads_models: bool) -> None:
    """Catalogue names must be pulled before a node starts: one line naming the command, not a
    traceback from the lifespan (an API node of a cluster only describes its models)."""
    from tdmi.service.weights.resolve import resolve_detector, resolve_model, weights_store

    store = weights_store(settings)
    for spec in settings.models:
        resolve_model(spec, store, need_file=loads_models)
    if loads_models:
        resolve_detector(settings.detector, store)


def _run_server(app_factory: Callable[[Any], Any], settings: Any, role: Literal["serve", "worker"]) -> int:
    """Bind first, then build and start the node: a node that cannot listen never joins a cluster."""
    import json
    import logging

    from tdmi.service.auth import check_bind
    from tdmi.service.http_server import run_http_server
    from tdmi.service.listen import bind_listener
    from tdmi.service.logs import configure_logging

    check_bind(settings)
    listener = bind_listener(settings, role)
    configure_logging(settings.log_format)
    logging.getLogger("tdmi.service").info("settings: %s", json.dumps(settings.public()))
    with listener:
        run_http_server(app_factory(settings), settings, listener)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from tdmi.service.main import create_app

    settings = _settings(args)
    embedded = settings.redis_url is None
    _check_weights(settings, loads_models=embedded)
    if embedded:  # before the port: a second server on the same jobs stops here, with one line
        from tdmi.service.data_dir_lock import hold_data_dir

        hold_data_dir(settings.data_dir)
    return _run_server(create_app, settings, "serve")


def _worker(args: argparse.Namespace) -> int:
    from tdmi.service.main import create_worker_app

    settings = _settings(args)
    if settings.redis_url is None:
        raise ValueError("tdmi worker needs --redis URL (or TDMI_REDIS_URL)")
    _check_weights(settings, loads_models=True)
    return _run_server(create_worker_app, settings, "worker")


def _add_node_flags(parser: argparse.ArgumentParser, default_port: str) -> None:
    """Flags shared by the API node and the worker (each also readable from TDMI_* variables)."""
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1, TDMI_HOST)")
    parser.add_argument("--port", type=int, help=f"HTTP port (default {default_port}, TDMI_PORT)")
    parser.add_argument(
        "--base-port",
        type=int,
        help="the nodes of one host count their default ports from here (default 8000, TDMI_BASE_PORT)",
    )
    parser.add_argument("--device", help="cpu or cuda[:N] (default cpu, TDMI_DEVICE)")
    parser.add_argument(
        "--backend",
        choices=["auto", "torch", "torchscript", "onnxruntime"],
        help="inference runtime (auto: onnxruntime on a CPU, else torch)",
    )
    parser.add_argument(
        "--data-dir",
        help="job database, uploads and results; shared by all nodes of a cluster (TDMI_DATA_DIR; "
        "default $XDG_DATA_HOME/tdmi, else ~/.local/share/tdmi)",
    )
    parser.add_argument("--redis", metavar="URL", help="redis://host:6379/0: run as a node of a cluster")
    parser.add_argument(
        "--insecure", action="store_true", help="allow listening beyond loopback without API keys"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="NAME[=CHECKPOINT]",
        help="model to load (repeatable): a preset or a pulled catalogue entry, optionally with a "
        "checkpoint file or catalogue entry to start from",
    )


_DETECTOR_HELP = (
    "hog, none, onnx:/path/model.onnx, onnx-LAYOUT:/path/model.onnx or a pulled catalogue detector "
    "(TDMI_DETECTOR; default: the "
    "first pulled catalogue detector, else hog)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tdmi", description="TDMI human pose for video")
    commands = parser.add_subparsers(dest="command", required=True)
    add_model_commands(commands)
    add_weights_command(commands)
    serve = commands.add_parser(
        "serve", help="run the pose service (embedded; with --redis, an API node of a cluster)"
    )
    _add_node_flags(serve, "the base port, 8000")
    serve.add_argument("--detector", help=_DETECTOR_HELP)
    serve.set_defaults(run=_serve)
    worker = commands.add_parser("worker", help="run a worker node of a cluster (needs --redis)")
    _add_node_flags(worker, "base port + 1 + N for --device cuda:N, so 8001 on cuda:0")
    worker.add_argument("--detector", help=_DETECTOR_HELP)
    worker.add_argument("--worker-id", help="name in the cluster (default host-pid, TDMI_WORKER_ID)")
    worker.set_defaults(run=_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (ValueError, FileNotFoundError) as exc:  # CheckpointError, UnknownPresetError among them
        print(f"tdmi: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
