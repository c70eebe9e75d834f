"""The docs hold together: every relative link and anchor resolves, every doc is listed in
docs/README.md, and the commands and reasons they name exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmbatch.api.conditions import Reason
from llmbatch.api.phases import Phase

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LINK = re.compile(r"\[[^\]]+\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("doc", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    # Code (fenced blocks, inline spans) may hold regexes that look like links.
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path_part, _, anchor = target.partition("#")
        linked = (doc.parent / path_part).resolve() if path_part else doc
        assert linked.exists(), f"{doc.name}: broken link {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked.read_text()), f"{doc.name}: no anchor {target}"


def test_index_lists_every_doc() -> None:
    index = (DOCS / "README.md").read_text()
    for doc in DOCS.glob("*.md"):
        if doc.name != "README.md":
            assert f"({doc.name})" in index, f"docs/README.md does not link {doc.name}"


def test_troubleshooting_covers_every_phase_and_reason() -> None:
    text = (DOCS / "troubleshooting.md").read_text()
    for phase in Phase:
        assert f"### {phase.value}" in text
    for reason in Reason:
        assert f"`{reason.value}`" in text, f"troubleshooting.md does not explain {reason.value}"
