"""``tdmi``: the one command line of the project (model tools and the service)."""

from __future__ import annotations

import argparse
import sys

from model.cli import add_model_commands

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    import json
    import logging

    import uvicorn

    from service.auth import check_bind
    from service.config import Settings
    from service.logs import configure_logging
    from service.main import create_app

    overrides = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "device": args.device,
            "backend": args.backend,
            "detector": args.detector,
            "data_dir": args.data_dir,
            "models": args.model,
            "insecure": args.insecure or None,
        }.items()
        if value is not None
    }
    settings = Settings(**overrides)
    check_bind(settings)
    log_config = configure_logging(settings.log_format)
    logging.getLogger("tdmi.service").info("settings: %s", json.dumps(settings.public()))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=log_config,
        ws_max_size=settings.max_message_bytes,
        ws_ping_interval=settings.heartbeat_s,
        ws_ping_timeout=settings.heartbeat_s,
        timeout_graceful_shutdown=10,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tdmi", description="TDMI human pose for video")
    commands = parser.add_subparsers(dest="command", required=True)
    add_model_commands(commands)
    serve = commands.add_parser("serve", help="run the pose service (embedded mode)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1, TDMI_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000, TDMI_PORT)")
    serve.add_argument("--device", help="cpu or cuda[:N] (default cpu, TDMI_DEVICE)")
    serve.add_argument("--backend", choices=["torch", "torchscript", "onnxruntime"], help="inference runtime")
    serve.add_argument("--data-dir", help="jobs database, uploads and results (TDMI_DATA_DIR)")
    serve.add_argument("--detector", help="hog, none or onnx:/path/yolo.onnx (TDMI_DETECTOR)")
    serve.add_argument(
        "--insecure", action="store_true", help="allow listening beyond loopback without API keys"
    )
    serve.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="NAME[=CHECKPOINT]",
        help="model to load (repeatable)",
    )
    serve.set_defaults(run=_serve)
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
