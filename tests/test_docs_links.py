"""Every relative link of the guide and the reference leads somewhere: a moved section or a
renamed heading otherwise leaves a link that only a reader finds broken.

A link's file must exist; its ``#anchor`` must be a heading of that file, slugged as GitHub does
(lower case, punctuation dropped, spaces to hyphens, ``-1``, ``-2`` for repeats). Links inside
code (fenced blocks and backtick spans) are text, not links, and are not checked."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).parents[1]
TOP = ("README.md", "BENCHMARKS.md", "configs/README.md", "deploy/README.md")
DOCUMENTS = sorted([ROOT / name for name in TOP] + list((ROOT / "docs").rglob("*.md")))
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    """The text without code, where link syntax is only text."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a markdown file offers: its headings' slugs, repeats numbered."""
    seen: Counter[str] = Counter()
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        slug = _slug(heading)
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return found


def relative_links(path: Path) -> list[str]:
    """The links of a file that point into the repository (no scheme, no mail)."""
    links = LINK.findall(_prose(path.read_text()))
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link, re.IGNORECASE)]


def test_the_slug_follows_github() -> None:
    assert _slug("Deployment: several workers over Redis") == "deployment-several-workers-over-redis"
    assert _slug("The model library (`tdmi.model`)") == "the-model-library-tdmimodel"
    assert _slug("The performance issue (#15), measured (2026-12-02)") == (
        "the-performance-issue-15-measured-2026-12-02"
    )


def test_links_in_code_are_not_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[a](#top) `[b](missing.md)`\n\n```\n[c](gone.md)\n```\n[d](https://x.org)\n")
    assert relative_links(page) == ["#top"]
    assert anchors(page) == {"top"}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for link in relative_links(document):
        target, _, anchor = unquote(link).partition("#")
        path = (document.parent / target).resolve() if target else document
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link}: no heading with this anchor in {path.relative_to(ROOT)}")
    assert not broken, f"{document.relative_to(ROOT)}: " + "; ".join(broken)
