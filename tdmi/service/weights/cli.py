"""``tdmi weights list | pull NAME... | path NAME``: the one place anything is downloaded."""

from __future__ import annotations

import argparse
import sys

from tdmi.service.config import Settings
from tdmi.service.weights.catalogue import CatalogueEntry, WeightsStore
from tdmi.service.weights.download import PullError, pull
from tdmi.service.weights.resolve import weights_store

__all__ = ["add_weights_command"]


def _describe(entry: CatalogueEntry, store: WeightsStore) -> list[str]:
    state = f"pulled: {store.path(entry)}" if store.is_pulled(entry) else "not pulled"
    size = f", {entry.size:,} bytes" if entry.size else ""
    shape = f"{entry.input_size[0]}x{entry.input_size[1]}"
    what = f"joints {entry.joints}, preset {entry.preset}" if entry.kind == "pose" else "persons"
    lines = [
        f"{entry.name}  [{entry.kind}, {state}]",
        f"    {entry.title}",
        f"    input {shape}, {what}, format {entry.layout}; licence {entry.licence}",
        f"    {entry.url or entry.manual}{size}; {entry.hash_note}",
    ]
    if entry.accuracy:
        lines.append(f"    publisher's accuracy: {entry.accuracy}")
    return lines


def _list(args: argparse.Namespace) -> int:
    store = weights_store(Settings())
    print(f"cache: {store.directory} (TDMI_WEIGHTS_DIR)")
    for entry in store.catalogue.entries.values():
        print("\n".join(_describe(entry, store)))
    return 0


def _pull(args: argparse.Namespace) -> int:
    settings = Settings()
    store = weights_store(settings)
    entries = [store.catalogue.get(name) for name in args.names]  # unknown names fail before any fetch
    for entry in entries:
        try:
            path = pull(
                entry,
                store,
                settings.weights_mirror,
                progress=not args.quiet,
                warn=lambda line: print(f"tdmi: warning: {line}", file=sys.stderr),
            )
        except PullError as exc:
            print(f"tdmi: error: {exc}", file=sys.stderr)
            return 1
        print(f"{entry.name}: {path}")
    return 0


def _path(args: argparse.Namespace) -> int:
    """The pulled file, for scripts (``--set model.init=$(tdmi weights path NAME)``)."""
    print(weights_store(Settings()).require(args.name)[1])
    return 0


def add_weights_command(commands: argparse._SubParsersAction) -> None:
    """Register ``tdmi weights list|pull|path`` on the ``tdmi`` parser."""
    weights = commands.add_parser(
        "weights",
        help="published pose checkpoints and person detectors: list them, pull them into the cache",
        description="Cache: TDMI_WEIGHTS_DIR (default $XDG_CACHE_HOME/tdmi/weights). "
        "TDMI_WEIGHTS_MIRROR replaces each publisher's host; TDMI_WEIGHTS_CATALOGUE adds entries.",
    )
    verbs = weights.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="the catalogue, with what is pulled")
    listing.set_defaults(run=_list)
    fetch = verbs.add_parser("pull", help="download, check and cache catalogue entries")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="catalogue names (`tdmi weights list`)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(run=_pull)
    where = verbs.add_parser("path", help="the file of a pulled entry (fails if it is not pulled)")
    where.add_argument("name", metavar="NAME")
    where.set_defaults(run=_path)
