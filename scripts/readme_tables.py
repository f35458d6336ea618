"""Every measured table in README.md, recomputed from committed files: CI fails when one differs (issue 23).

    python scripts/readme_tables.py --check   # exit 1 naming each table that differs (a diff) or lacks its source
    python scripts/readme_tables.py --write   # rewrite the marked tables in place from their sources

A table is marked in the README by two HTML comments (invisible on GitHub):

    <!-- generated: NAME (python scripts/readme_tables.py --write) -->
    | ... the table ... |
    <!-- /generated -->

and NAME is one of TABLES below: the committed file or folder it reads and the generator
(scripts/readme_generators.py) that renders it. Why: a number typed into the README rots silently when the
records or the code that formats them change; here every one of them is a function of committed files.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: bench/ and scripts/ import from the repository root
    sys.path.insert(0, str(REPO))

from chimera.errors import ChimeraError  # noqa: E402
from scripts import readme_generators as gen  # noqa: E402

START = re.compile(r"^<!-- generated: (?P<name>[a-z0-9-]+)(?: \(.*\))? -->$")
END = "<!-- /generated -->"


@dataclass(frozen=True)
class Table:
    """One marked README table: the committed file or folder it is computed from, and how."""

    source: str  # relative to the repository root
    render: Callable[[Path], list[str]]


TABLES: dict[str, Table] = {
    "full-results": Table("docs/results/full", gen.full_results),
    "ablation-leave-one-out": Table("docs/results/ablation-ci", gen.ablation),
    "ci-seeds": Table("docs/results/ci-seeds", gen.ci_seeds),
    "speed": Table("docs/results/bench/cpu.json", gen.speed),
    "ttq": Table("docs/results/bench/cpu.json", gen.time_to_quality),
    "speed-native-bf16-cpu": Table("docs/results/bench/cpu-xeon-amx.json", gen.speed),
    "speed-h200": Table("docs/results/gpu-check/h200/bench.json", gen.speed),
}


@dataclass(frozen=True)
class Region:
    """The lines strictly between a table's two markers (0-based, end exclusive)."""

    name: str
    start: int
    end: int


def find_regions(lines: list[str]) -> dict[str, Region]:
    """Every marked region by name; ChimeraError naming the line for a marker left open, closed twice, nested
    or a name used twice."""
    regions: dict[str, Region] = {}
    open_at: tuple[str, int] | None = None
    for i, line in enumerate(lines):
        match = START.match(line.strip())
        if match:
            if open_at:
                raise ChimeraError(f"README line {i + 1}: a table marker inside '{open_at[0]}' (line "
                                   f"{open_at[1] + 1}), which is not closed; add {END} after its table")
            open_at = (match["name"], i)
        elif line.strip() == END:
            if not open_at:
                raise ChimeraError(f"README line {i + 1}: {END} without a '<!-- generated: NAME -->' above it")
            name, begin = open_at
            if name in regions:
                raise ChimeraError(f"README line {begin + 1}: table '{name}' is marked twice")
            regions[name] = Region(name, begin + 1, i)
            open_at = None
    if open_at:
        raise ChimeraError(f"README line {open_at[1] + 1}: table '{open_at[0]}' is never closed; add {END}")
    return regions


def _content(lines: list[str], region: Region) -> list[str]:
    """The region's lines without the blank lines that keep the markers apart from the table."""
    body = lines[region.start:region.end]
    while body and not body[0].strip():
        body = body[1:]
    while body and not body[-1].strip():
        body = body[:-1]
    return body


def _generate(name: str, tables: dict[str, Table], root: Path) -> tuple[list[str] | None, str]:
    """(the table's lines, "") or (None, why not): a missing source or one its generator cannot read."""
    source = root / tables[name].source
    if not source.exists():
        return None, f"{name}: missing source {tables[name].source} (commit it, then --write)"
    try:
        return tables[name].render(source), ""
    except ChimeraError as exc:
        return None, f"{name}: cannot compute it from {tables[name].source}: {exc}"


def check(text: str, tables: dict[str, Table] = TABLES, root: Path = REPO,
          only: Collection[str] = ()) -> list[str]:
    """One problem per entry (with its diff where the table differs); empty when every table matches.
    `only`: check these tables and no others (the rest are neither computed nor missed)."""
    lines = text.splitlines()
    regions = find_regions(lines)
    problems = [f"{name}: marked in the README but no such table (known: {', '.join(tables)})"
                for name in regions if name not in tables]
    wanted = [name for name in tables if not only or name in only]
    problems += [f"{name}: not marked in the README (wrap its table in <!-- generated: {name} ... --> and {END})"
                 for name in wanted if name not in regions]
    for name in (n for n in regions if n in wanted):
        expected, why = _generate(name, tables, root)
        if expected is None:
            problems.append(why)
            continue
        shown = _content(lines, regions[name])
        if shown != expected:
            diff = difflib.unified_diff(shown, expected, f"README.md ({name})", f"{tables[name].source} ({name})",
                                        lineterm="")
            problems.append(f"{name}: the README's table differs from {tables[name].source}\n" + "\n".join(diff))
    return problems


def write(text: str, tables: dict[str, Table] = TABLES, root: Path = REPO) -> tuple[str, list[str]]:
    """The README with every marked table whose source is readable regenerated, and the problems left
    (tables not marked, sources missing)."""
    lines = text.splitlines()
    problems = [f"{name}: not marked in the README" for name in tables if name not in find_regions(lines)]
    for region in sorted(find_regions(lines).values(), key=lambda r: -r.start):  # bottom up: indices stay valid
        if region.name not in tables:
            problems.append(f"{region.name}: marked in the README but no such table")
            continue
        expected, why = _generate(region.name, tables, root)
        if expected is None:
            problems.append(why)
            continue
        lines[region.start:region.end] = ["", *expected, ""]
    return "\n".join(lines) + ("\n" if text.endswith("\n") else ""), problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 when a table differs or its source is missing")
    mode.add_argument("--write", action="store_true", help="rewrite the marked tables in place")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--root", type=Path, default=REPO, help="where the sources are read (default: the repo)")
    parser.add_argument("--only", nargs="+", choices=sorted(TABLES), default=(), metavar="NAME",
                        help=f"--check these tables only ({', '.join(TABLES)})")
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text(encoding="utf-8")
        if args.check:
            problems = check(text, TABLES, args.root, args.only)
        else:
            new, problems = write(text, TABLES, args.root)
            if new != text:
                args.readme.write_text(new, encoding="utf-8")
    except (ChimeraError, OSError) as exc:
        print(f"readme_tables: error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{args.readme}: {len(args.only or TABLES)} tables match their sources" if args.check else
              f"{args.readme}: {len(TABLES)} tables written")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
