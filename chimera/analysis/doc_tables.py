"""Every measured table in README.md and docs/*.md, recomputed from committed files: CI fails when one differs.

    chimera tables check   # check_tables(root): one problem per table that differs (with a diff) or lacks its source
    chimera tables write   # write_tables(root): rewrite the marked tables in place from their sources

A table is marked on its page by two HTML comments (invisible on GitHub):

    <!-- generated: NAME (chimera tables write) -->
    | ... the table ... |
    <!-- /generated -->

and NAME is one of TABLES below: the committed file or folder it reads and the renderer
(chimera/analysis/table_renderers.py) that draws it. A table may be marked on more than one page (the
README's headline table is also on docs/findings.md); every copy is checked. Why: a number typed into a page
rots silently when the records or the code that formats them change; here every one of them is a function of
committed files.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from chimera.analysis import table_renderers as render
from chimera.errors import ChimeraError
from chimera.fileio import atomic_write_text

START = re.compile(r"^<!-- generated: (?P<name>[a-z0-9-]+)(?: \(.*\))? -->$")
END = "<!-- /generated -->"
WRITE_COMMAND = "chimera tables write"
PAGES = ("README.md", "docs/*.md")  # the pages searched for marked tables, relative to the repository root


@dataclass(frozen=True)
class Table:
    """One marked table: the committed file or folder it is computed from (relative to the root), and how."""

    source: str
    render: Callable[[Path], list[str]]


TABLES: dict[str, Table] = {
    "full-results": Table("docs/results/full", render.full_results),
    "ablation-leave-one-out": Table("docs/results/ablation-ci", render.ablation),
    "ci-seeds": Table("docs/results/ci-seeds", render.ci_seeds),
    "speed": Table("docs/results/bench/cpu.json", render.speed),
    "ttq": Table("docs/results/bench/cpu.json", render.time_to_quality),
    "speed-native-bf16-cpu": Table("docs/results/bench/cpu-xeon-amx.json", render.speed),
    "speed-h200": Table("docs/results/gpu-check/h200/bench.json", render.speed),
}


@dataclass(frozen=True)
class Region:
    """The lines strictly between a table's two markers (0-based, end exclusive) on one page."""

    name: str
    start: int
    end: int


def start_marker(name: str) -> str:
    return f"<!-- generated: {name} ({WRITE_COMMAND}) -->"


def pages(root: Path) -> list[Path]:
    """README.md and docs/*.md under `root`, those that exist."""
    return sorted({path for pattern in PAGES for path in root.glob(pattern) if path.is_file()})


def find_regions(lines: list[str], page: str = "README.md") -> dict[str, Region]:
    """Every marked region of one page by name; ChimeraError naming the page and line for a marker left open,
    closed twice, nested or a name used twice."""
    regions: dict[str, Region] = {}
    open_at: tuple[str, int] | None = None
    for i, line in enumerate(lines):
        match = START.match(line.strip())
        if match:
            if open_at:
                raise ChimeraError(f"{page} line {i + 1}: a table marker inside '{open_at[0]}' (line "
                                   f"{open_at[1] + 1}), which is not closed; add {END} after its table")
            open_at = (match["name"], i)
        elif line.strip() == END:
            if not open_at:
                raise ChimeraError(f"{page} line {i + 1}: {END} without a '<!-- generated: NAME -->' above it")
            name, begin = open_at
            if name in regions:
                raise ChimeraError(f"{page} line {begin + 1}: table '{name}' is marked twice on this page")
            regions[name] = Region(name, begin + 1, i)
            open_at = None
    if open_at:
        raise ChimeraError(f"{page} line {open_at[1] + 1}: table '{open_at[0]}' is never closed; add {END}")
    return regions


@dataclass
class _Page:
    path: Path
    name: str  # relative to the root, for messages
    lines: list[str]
    regions: dict[str, Region]


def _read_pages(root: Path, tables: Mapping[str, Table]) -> tuple[list[_Page], list[str]]:
    """Every page with its regions, and the problems of the markers: malformed, unknown names, tables unmarked."""
    found, problems = [], []
    for path in pages(root):
        name = path.relative_to(root).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        try:
            regions = find_regions(lines, name)
        except ChimeraError as exc:
            problems.append(str(exc))
            continue
        problems += [f"{table}: marked on {name} (line {region.start}) but no such table (known: {', '.join(tables)})"
                     for table, region in regions.items() if table not in tables]
        found.append(_Page(path, name, lines, regions))
    marked = {table for page in found for table in page.regions}
    problems += [f"{table}: not marked on any of {', '.join(PAGES)} (wrap its table in {start_marker(table)} and "
                 f"{END})" for table in tables if table not in marked]
    return found, problems


def _content(lines: list[str], region: Region) -> list[str]:
    """The region's lines without the blank lines that keep the markers apart from the table."""
    body = lines[region.start:region.end]
    while body and not body[0].strip():
        body = body[1:]
    while body and not body[-1].strip():
        body = body[:-1]
    return body


def _generate(name: str, table: Table, root: Path) -> tuple[list[str] | None, str]:
    """(the table's lines, "") or (None, why not): a missing source or one its renderer cannot read."""
    source = root / table.source
    if not source.exists():
        return None, f"{name}: missing source {table.source} (commit it, then `{WRITE_COMMAND}`)"
    try:
        return table.render(source), ""
    except ChimeraError as exc:
        return None, f"{name}: cannot compute it from {table.source}: {exc}"


def _expected(found: list[_Page], tables: Mapping[str, Table], root: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Each marked table's lines, computed once, and the tables that could not be computed."""
    expected, problems = {}, []
    for name in dict.fromkeys(n for page in found for n in page.regions if n in tables):
        lines, why = _generate(name, tables[name], root)
        if lines is None:
            problems.append(why)
        else:
            expected[name] = lines
    return expected, problems


def check_tables(root: Path, tables: Mapping[str, Table] = TABLES) -> list[str]:
    """One problem per entry (a differing table with its diff, a missing source, a marker out of place); empty
    when every generated table in README.md and docs/*.md under `root` matches its committed source."""
    found, problems = _read_pages(root, tables)
    expected, unreadable = _expected(found, tables, root)
    problems += unreadable
    for page in found:
        for name, region in page.regions.items():
            shown = _content(page.lines, region)
            if name in expected and shown != expected[name]:
                diff = difflib.unified_diff(shown, expected[name], f"{page.name} ({name})",
                                            f"{tables[name].source} ({name})", lineterm="")
                problems.append(f"{name}: the table on {page.name} differs from {tables[name].source}\n"
                                + "\n".join(diff))
    return problems


def write_tables(root: Path, tables: Mapping[str, Table] = TABLES) -> list[str]:
    """Rewrite every marked table under `root` from its source; the names of the tables whose text changed.
    ChimeraError listing every problem (markers out of place, sources missing or unreadable), and nothing
    written, when any table cannot be written."""
    found, problems = _read_pages(root, tables)
    expected, unreadable = _expected(found, tables, root)
    if problems + unreadable:
        raise ChimeraError(f"cannot write the tables ({len(problems + unreadable)} problems): "
                           + "; ".join(problems + unreadable))
    rewritten: set[str] = set()
    for page in found:
        lines = list(page.lines)
        for region in sorted(page.regions.values(), key=lambda r: -r.start):  # bottom up: indices stay valid
            if _content(lines, region) != expected[region.name]:
                rewritten.add(region.name)
            lines[region.start:region.end] = ["", *expected[region.name], ""]
        if lines != page.lines:
            text = page.path.read_text(encoding="utf-8")
            atomic_write_text(page.path, "\n".join(lines) + ("\n" if text.endswith("\n") else ""))
    return [name for name in tables if name in rewritten]
