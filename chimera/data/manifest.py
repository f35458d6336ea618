"""Train-pool manifests: which rows of the hub's AG News train split a run draws from, listed by content hash.

The offline copy holds a subset of the train split, and every published record was cut from it. A
manifest names each of its rows by a hash of the row's hub text and label, in the subset's order, so
anyone with the hub (or any copy of the full split) rebuilds the same pool, row for row, without the
text ever entering the repository. Make one from a data folder:

    python scripts/make_data_manifest.py "$CHIMERA_DATA_DIR" --name ag_news-train-subset

A manifest is never edited: a different pool gets a new name (records name the one they used).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chimera.errors import ChimeraError

MANIFEST_DIR = Path(__file__).parent / "manifests"
FORMAT = "chimera train-pool manifest v1"
HASH_CHARS = 16  # 64 bits: a collision among AG News's 127,600 rows has odds of about 1 in 2 billion
RECIPE = (f"first {HASH_CHARS} hex digits of sha256 over UTF-8 '<label>\\t<text>', with text and label (0-3) "
          "exactly as the hub's dataset yields them (no cleaning)")
HEADER_KEYS = ("name", "source", "recipe", "rows", "made_from")
PIN = "@sha256:"


def row_hash(text: str, label: int) -> str:
    """The manifest's name for one row: `text` as the hub gives it (before `clean_text`), label 0-3."""
    return hashlib.sha256(f"{label}\t{text}".encode()).hexdigest()[:HASH_CHARS]


@dataclass(frozen=True)
class Manifest:
    """One train pool: the header's facts and the row hashes in pool order."""

    name: str
    source: str  # where the rows live: the hub dataset and split
    made_from: str  # the file it was made from and that file's sha256
    hashes: tuple[str, ...]
    sha256: str  # of the manifest's text (LF line ends, so a CRLF checkout pins the same value)
    path: Path

    def __len__(self) -> int:
        return len(self.hashes)


def format_manifest(name: str, *, source: str, made_from: str, hashes: Sequence[str]) -> str:
    """The manifest file's text: a `# key: value` header, then one hash a line."""
    header = {"name": name, "source": source, "recipe": RECIPE, "rows": str(len(hashes)), "made_from": made_from}
    lines = [f"# {FORMAT}", *(f"# {key}: {header[key]}" for key in HEADER_KEYS), *hashes]
    return "\n".join(lines) + "\n"


def load_manifest(name: str, *, folder: Path | None = None) -> Manifest:
    """The manifest `folder/<name>.txt` (default: the packaged ones), checked against its own header."""
    folder = MANIFEST_DIR if folder is None else folder
    path = folder / f"{name}.txt"
    try:
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in folder.glob("*.txt"))) or "none"
        raise ChimeraError(f"data.train_pool: no manifest {name!r} ({path} not found; known: {known})") from None
    lines = text.splitlines()
    if not lines or lines[0] != f"# {FORMAT}":
        raise ChimeraError(f"{path}: line 1: expected '# {FORMAT}'")
    header = dict(line[2:].split(": ", 1) for line in lines[1:1 + len(HEADER_KEYS)] if ": " in line)
    missing = [key for key in HEADER_KEYS if key not in header]
    if missing:
        raise ChimeraError(f"{path}: header lacks {', '.join(missing)}; "
                           "regenerate it with scripts/make_data_manifest.py")
    if header["name"] != name:
        raise ChimeraError(f"{path}: header names {header['name']!r}; a manifest's file is named after it")
    if header["recipe"] != RECIPE:
        raise ChimeraError(f"{path}: recipe {header['recipe']!r} is not this version's ({RECIPE!r})")
    hashes = tuple(lines[1 + len(HEADER_KEYS):])
    for number, value in enumerate(hashes, start=2 + len(HEADER_KEYS)):
        if len(value) != HASH_CHARS or value.strip("0123456789abcdef"):
            raise ChimeraError(f"{path}: line {number}: expected {HASH_CHARS} lowercase hex digits, got {value!r}")
    if str(len(hashes)) != header["rows"]:
        raise ChimeraError(f"{path}: header says {header['rows']} rows but the file lists {len(hashes)}")
    return Manifest(name=header["name"], source=header["source"], made_from=header["made_from"], hashes=hashes,
                    sha256=hashlib.sha256(text.encode()).hexdigest(), path=path)


def parse_pool(spec: str) -> tuple[str, str | None] | None:
    """None for "all"; else (manifest name, pinned sha256 or None) of "manifest:NAME[@sha256:HEX]"."""
    if spec == "all":
        return None
    name, _, pin = spec.removeprefix("manifest:").partition(PIN)
    return name, pin or None


def manifest_for(spec: str) -> Manifest | None:
    """The manifest a `data.train_pool` value names (None for "all"), refusing one that a pin says changed."""
    parsed = parse_pool(spec)
    if parsed is None:
        return None
    name, pin = parsed
    manifest = load_manifest(name)
    if pin is not None and pin != manifest.sha256:
        raise ChimeraError(f"data.train_pool: {manifest.path} has sha256 {manifest.sha256[:12]}... but the config "
                           f"pins {pin[:12]}...; check out the commit the record was made at")
    return manifest


def pin_pool(spec: str) -> str:
    """`spec` with the named manifest's sha256 attached, as a run's record keeps it ("all" stays as it is)."""
    manifest = manifest_for(spec)
    return spec if manifest is None else f"manifest:{manifest.name}{PIN}{manifest.sha256}"


def select_rows(hashes: Sequence[str], manifest: Manifest, *, source: str) -> list[int]:
    """Indices into `hashes` (one per row of `source`'s train split) of the manifest's rows, in its order.

    A hash listed k times takes the first k rows that carry it, so repeated rows keep their multiplicity.
    """
    rows_by_hash: dict[str, list[int]] = {}
    for index in reversed(range(len(hashes))):  # reversed so that pop() hands out the earliest row first
        rows_by_hash.setdefault(hashes[index], []).append(index)
    picked: list[int] = []
    missing = 0
    for value in manifest.hashes:
        rows = rows_by_hash.get(value)
        if rows:
            picked.append(rows.pop())
        else:
            missing += 1
    if missing:
        raise ChimeraError(
            f"{source}: {missing} of the {len(manifest)} rows of train-pool manifest {manifest.name} "
            f"({manifest.path.name}) are not in this train split; load the full split (the hub, or a folder "
            f"holding all of it), or set data.train_pool=all to use this source's rows as they are")
    return picked
