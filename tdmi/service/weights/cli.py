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
        f"    input {shape}, {what}, format {entry.layout}",
        f"    licence: code {entry.licence}; weights {entry.weights_terms}",
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
    """Every name is tried, whatever became of the ones before; a summary ends a pull of several."""
    settings = Settings()
    store = weights_store(settings)
    entries = [store.catalogue.get(name) for name in dict.fromkeys(args.names)]  # unknown: before any fetch
    failed: list[tuple[str, PullError]] = []
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
            failed.append((entry.name, exc))
            continue
        print(f"{entry.name}: {path}")
    unreachable = [name for name, exc in failed if exc.unreachable]
    if unreachable:
        for line in _offline_hints(unreachable, settings.weights_mirror):
            print(f"tdmi: hint: {line}", file=sys.stderr)
    if len(entries) > 1:
        names = ", ".join(name for name, _ in failed)
        print(
            f"tdmi: pulled {len(entries) - len(failed)} of {len(entries)}"
            + (f"; failed: {names}" if failed else ""),
            file=sys.stderr,
        )
    return 1 if failed else 0


def _offline_hints(names: list[str], mirror: str | None) -> list[str]:
    """What to do without a connection to the publisher: a mirror, or the file placed by hand."""
    if mirror:
        first = f"the mirror TDMI_WEIGHTS_MIRROR={mirror} could not be reached: check it, or unset it"
    else:
        first = (
            "offline? TDMI_WEIGHTS_MIRROR=http://HOST/PATH fetches the same files from a mirror "
            "(each publisher's path below it)"
        )
    return [
        first,
        "or download a file on another machine (its URL: `tdmi weights list`) and place it where "
        f"`tdmi weights path NAME` says: {', '.join(names)}",
    ]


def _path(args: argparse.Namespace) -> int:
    """Where the entry's file is, or goes when placed by hand; for scripts
    (``--set model.init=$(tdmi weights path NAME)``) it fails while the file is not there."""
    store = weights_store(Settings())
    entry = store.catalogue.get(args.name)
    print(store.path(entry))
    if store.is_pulled(entry):
        return 0
    inside = f" (the member {entry.archive_member} of the zip download)" if entry.archive_member else ""
    how = (
        f"`tdmi weights pull {entry.name}` fetches it, or place the file{inside} there by hand"
        if entry.url
        else f"{entry.manual} and place it{inside} there"
    )
    print(f"tdmi: {entry.name} is not there yet: {how}", file=sys.stderr)
    return 1


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
    where = verbs.add_parser(
        "path", help="where an entry's file is or goes (placed by hand); fails while it is not there"
    )
    where.add_argument("name", metavar="NAME")
    where.set_defaults(run=_path)
