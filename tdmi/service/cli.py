"""``tdmi``: the one command line of the project (model tools and the service)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, Literal

from tdmi.model.cli import add_model_commands
from tdmi.service.config import Settings
from tdmi.service.settings_flags import SETTINGS_HELP, add_settings_flags, settings_from_flags
from tdmi.service.weights.cli import add_weights_command

__all__ = ["main"]


def _check_weights(settings: Settings, loads_models: bool) -> None:
    """Catalogue names must be pulled before a node starts: one line naming every missing entry
    and the command, not a traceback from the lifespan."""
    from tdmi.service.weights.resolve import check_pulled

    check_pulled(settings, loads_models)


def _log_settings(settings: Settings, role: Literal["serve", "worker"]) -> None:
    """JSON logs get every setting in one object (for machines); text logs the few a person
    changed, one a line, and where to see the rest."""
    import json
    import logging

    from tdmi.service.settings_report import changed_settings

    log = logging.getLogger("tdmi.service")
    if settings.log_format == "json":
        log.info("settings: %s", json.dumps(settings.public()))
        return
    changed = changed_settings(settings)
    log.info(
        "settings: %s (every setting: tdmi %s --print-settings)",
        "these differ from their defaults" if changed else "all defaults",
        role,
    )
    for line in changed:
        log.info("  %s", line)


def _run_server(
    app_factory: Callable[[Settings], Any], settings: Settings, role: Literal["serve", "worker"]
) -> int:
    """Bind first, then build and start the node: a node that cannot listen never joins a cluster.
    The node is given the port bound (``--port 0`` picks one), so the URL it logs is the real one."""
    from tdmi.service.auth import check_bind
    from tdmi.service.http_server import run_http_server
    from tdmi.service.listen import bind_listener
    from tdmi.service.logs import configure_logging

    check_bind(settings)
    listener = bind_listener(settings, role)
    configure_logging(settings.log_format, settings.log_level)
    _log_settings(settings, role)
    bound = settings.model_copy(update={"port": listener.getsockname()[1]})
    with listener:
        run_http_server(app_factory(bound), bound, listener)
    return 0


def _print_settings(args: argparse.Namespace) -> int:
    """``--print-settings``: every setting as the flags, environment, file and defaults make it;
    starts nothing."""
    from tdmi.service.settings_report import all_settings

    print("\n".join(all_settings(settings_from_flags(args))))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from tdmi.service.main import create_app

    settings = settings_from_flags(args)
    embedded = settings.redis_url is None
    _check_weights(settings, loads_models=embedded)
    if embedded:  # before the port: a second server on the same jobs stops here, with one line
        from tdmi.service.data_dir_lock import hold_data_dir

        hold_data_dir(settings.data_dir)
    return _run_server(create_app, settings, "serve")


def _worker(args: argparse.Namespace) -> int:
    from tdmi.service.main import create_worker_app

    settings = settings_from_flags(args)
    if settings.redis_url is None:
        raise ValueError("tdmi worker needs --redis URL (or TDMI_REDIS_URL)")
    _check_weights(settings, loads_models=True)
    return _run_server(create_worker_app, settings, "worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tdmi", description="TDMI human pose for video")
    commands = parser.add_subparsers(dest="command", required=True)
    add_model_commands(commands)
    add_weights_command(commands)
    roles = {
        "serve": ("run the pose service (embedded; with --redis, an API node of a cluster)", _serve),
        "worker": ("run a worker node of a cluster (needs --redis)", _worker),
    }
    for name, (about, run) in roles.items():
        role = commands.add_parser(
            name, help=about, description=f"{about}. {SETTINGS_HELP}", usage="%(prog)s [SETTING FLAGS]"
        )
        role.add_argument(
            "--print-settings",
            action="store_true",
            help="print every setting (from the flags, the environment, the file and the defaults) and exit",
        )
        add_settings_flags(role)
        role.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run = _print_settings if getattr(args, "print_settings", False) else args.run
        return int(run(args))
    except (ValueError, FileNotFoundError) as exc:  # CheckpointError, UnknownPresetError among them
        print(f"tdmi: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
