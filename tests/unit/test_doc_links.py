"""Every relative link in README.md, docs/*.md and bench/README.md points at a file that exists, and every
`#anchor` into a markdown page at one of its headings (as GitHub makes them), so moving text between pages
cannot leave a dead link behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", REPO / "bench" / "README.md", *(REPO / "docs").glob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The page without fenced blocks and code spans, where a `[x](y)` is not a link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`]*`", "", text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.*?)\s*$", re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"),
                                                      flags=re.S | re.M), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(_prose(page.read_text(encoding="utf-8")))
            if not re.match(r"^[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_and_anchor_resolves(page):
    dead = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            dead.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            dead.append(f"{target}: no heading #{anchor} in {resolved.relative_to(REPO)}")
    assert not dead, dead


def test_the_checker_sees_links_and_headings():
    readme = REPO / "README.md"
    assert "docs/findings.md" in links(readme)
    assert "fp32-and-bf16-on-a-cpu-with-native-bf16-and-on-an-h200" in anchors(REPO / "docs" / "performance.md")


def test_the_readme_is_a_front_door_of_at_most_150_lines():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 150
