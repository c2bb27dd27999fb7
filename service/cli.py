"""``tdmi``: the one command line of the project (model tools and the service)."""

from __future__ import annotations

import argparse
import sys

from model.cli import add_model_commands

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.config import Settings
    from service.main import create_app

    settings = Settings(host=args.host, port=args.port, device=args.device)
    if args.model:
        settings = settings.model_copy(update={"models": args.model})
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tdmi", description="TDMI human pose for video")
    commands = parser.add_subparsers(dest="command", required=True)
    add_model_commands(commands)
    serve = commands.add_parser("serve", help="run the pose service (embedded mode)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
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
