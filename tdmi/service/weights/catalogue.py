"""The catalogue of published weight files ``tdmi weights`` knows, and where pulled files live.

The entries ship as ``catalogue.json`` beside this module: data, not code, so a site can add
its own (``TDMI_WEIGHTS_CATALOGUE`` names a JSON file of the same shape whose entries extend
or replace the shipped ones). Every URL, size and hash in the shipped file was read from the
publisher's own pages; ``source`` says which.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tdmi.model.joints import LAYOUTS

__all__ = [
    "Catalogue",
    "CatalogueEntry",
    "NotPulledError",
    "WeightsStore",
    "load_catalogue",
]

SHIPPED = Path(__file__).with_name("catalogue.json")


class CatalogueEntry(BaseModel):
    """One published file: where it comes from, how to check it, what it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    kind: Literal["pose", "detector"]
    title: str
    url: str | None = Field(description="direct download; None when the publisher gives none")
    manual: str | None = Field(default=None, description="how to get the file when there is no url")
    file: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="name of the file in the cache")
    archive_member: str | None = Field(default=None, description="the file to take out of a zip download")
    size: int | None = Field(default=None, gt=0, description="bytes of the download, when published")
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{8,64}$",
        description="SHA-256 of the download: in full, or the prefix the publisher gives",
    )
    licence: str = Field(description="the code's and the release's licence, as the publisher states it")
    weights_terms: str = Field(
        description="what governs the weights themselves: the data they were trained on and its terms "
        '("trained on Human-Art (non-commercial terms)"), which a code licence does not cover'
    )
    source: str = Field(description="where the URL and hash were read")
    preset: str | None = Field(default=None, description="pose: the network preset the file loads into")
    joints: str | None = Field(default=None, description="pose: the joint layout of its outputs")
    input_size: tuple[int, int] = Field(description="(height, width) the network takes")
    layout: str = Field(
        description="pose: the checkpoint format (official, mmpose-0.x, mmpose-1.x); detector: the "
        "ONNX output layout as tdmi.service.detection names it (yolox: raw head outputs decoded with "
        "their grids; mmdeploy: dets (1,N,5) and labels (1,N), NMS inside)"
    )
    accuracy: str | None = Field(
        default=None, description="the publisher's number, with what it measures (AP and mAP in percent)"
    )

    @field_validator("joints")
    @classmethod
    def _known_joints(cls, value: str | None) -> str | None:
        if value is not None and value not in LAYOUTS:
            raise ValueError(f"unknown joint layout {value!r}; known: {', '.join(LAYOUTS)}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> CatalogueEntry:
        if self.kind == "pose" and (self.preset is None or self.joints is None):
            raise ValueError("a pose entry names its preset and joints")
        if self.url is None and self.manual is None:
            raise ValueError("an entry without a url says how to get the file (manual)")
        return self

    @property
    def hash_note(self) -> str:
        if self.sha256 is None:
            return "no published hash"
        return "sha256 " + (self.sha256 if len(self.sha256) == 64 else f"{self.sha256}... (published prefix)")


class _CatalogueFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[CatalogueEntry]


class Catalogue:
    """Entries by name, in the order they were listed (detectors: most preferred first)."""

    def __init__(self, entries: list[CatalogueEntry]):
        self.entries = {entry.name: entry for entry in entries}

    def get(self, name: str) -> CatalogueEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ValueError(f"{name!r} is not in the weights catalogue; see `tdmi weights list`") from None

    def __contains__(self, name: object) -> bool:
        return name in self.entries


def _read_entries(path: Path) -> list[CatalogueEntry]:
    try:
        return _CatalogueFile.model_validate(json.loads(path.read_text())).entries
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"weights catalogue {path}: cannot be read ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"weights catalogue {path}: {where}: {first['msg']}") from None


def load_catalogue(extra: Path | None = None) -> Catalogue:
    """The shipped catalogue, extended (or overridden by name) by a site's file."""
    entries = {entry.name: entry for entry in _read_entries(SHIPPED)}
    if extra is not None:
        entries.update({entry.name: entry for entry in _read_entries(extra)})
    return Catalogue(list(entries.values()))


class NotPulledError(FileNotFoundError):
    """Catalogue entries named as models or detectors whose files are not in the cache."""

    def __init__(self, message: str, names: list[str]):
        super().__init__(message)
        self.names = names


class WeightsStore:
    """The cache directory of pulled files, seen through the catalogue."""

    def __init__(self, directory: Path, catalogue_file: Path | None = None):
        self.directory = directory
        self._catalogue_file = catalogue_file

    @cached_property
    def catalogue(self) -> Catalogue:
        return load_catalogue(self._catalogue_file)

    def path(self, entry: CatalogueEntry) -> Path:
        return self.directory / entry.file

    def is_pulled(self, entry: CatalogueEntry) -> bool:
        return self.path(entry).is_file()

    def require(self, name: str) -> tuple[CatalogueEntry, Path]:
        """The entry and its pulled file; ``NotPulledError`` with the command that fetches it."""
        entry = self.catalogue.get(name)
        if not self.is_pulled(entry):
            raise self.not_pulled([name])
        return entry, self.path(entry)

    def not_pulled(self, names: list[str]) -> NotPulledError:
        """The error naming every entry of ``names`` at once: one ``tdmi weights pull`` for those
        with a URL, where to place each of the others (a start-up fails once, not once per name)."""
        entries = [self.catalogue.get(name) for name in dict.fromkeys(names)]
        fetched = [entry.name for entry in entries if entry.url]
        steps = [f"run `tdmi weights pull {' '.join(fetched)}`"] if fetched else []
        for entry in entries:
            if not entry.url:
                whose = f"{entry.name}: " if len(entries) > 1 else ""
                steps.append(f"{whose}{entry.manual} and place it at {self.path(entry)}")
        listed = ", ".join(entry.name for entry in entries)
        verb = "is" if len(entries) == 1 else "are"
        return NotPulledError(
            f"{listed} {verb} not pulled into {self.directory}: {'; '.join(steps)}",
            [entry.name for entry in entries],
        )
