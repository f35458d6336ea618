"""Which rows a run uses: texts with their labels, the train pool a manifest pins, and the seeded subsets.

- Text: `TextSplit` (cleaned texts and 0-based labels, aligned), `clean_text` (undoes AG News' escapes) and
  the duplicate-detection key, shared by the reader (`agnews`), the subsets and the leakage scan.
- Train-pool manifests: the offline copy holds a subset of the hub's train split, and every published record
  was cut from it. A manifest names each of its rows by a hash of the row's hub text and label, in the
  subset's order, so anyone with the hub (or any copy of the full split) rebuilds the same pool, row for row,
  without the text entering the repository. A manifest is never edited: a different pool gets a new name.

      python scripts/make_data_manifest.py "$CHIMERA_DATA_DIR" --name ag_news-train-subset

- Subsets: seeded, stratified train / val / clean-train / test rows, with a leakage guard (val and test never
  share a duplicate key with an earlier set).
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chimera.config import DataConfig
from chimera.errors import ChimeraError

# The corpus writes line breaks as a backslash ("dwindling\band"); a backslash + n/r/t is only an
# escaped newline when no lowercase letter follows, since "\nuclear" is a break before "nuclear".
_ESCAPED_NEWLINE = re.compile(r"\\+[nrt](?![a-z])")
_BACKSLASHES = re.compile(r"\\+")
# Entities whose "&" the corpus turned into a space ("Iraq #39;s", "AT amp;T", "fell by  #36;1"):
# restoring the "&" in place of that one space gives back the original spacing.
_BARE_ENTITY = re.compile(
    r"(?: |(?<![&\w;]))(#\d{1,7}|#[xX][0-9a-fA-F]{1,6}"
    r"|quot|amp|lt|gt|apos|nbsp|hellip|rsquo|lsquo|rdquo|ldquo|mdash|ndash);")
# Markup the unescaping uncovers ("&lt;b&gt;" -> "<b>"); named tags only, so tickers like <MSFT.O> stay.
_HTML_TAG = re.compile(r"</?(?:a|b|i|u|p|br|em|strong|font|div|span|img|sup|sub|tt|hr|li|ul|ol|cite|nobr)"
                       r"\b[^<>]*>", re.IGNORECASE)
_NON_WORD = re.compile(r"[^\w\s]+|_+")


def clean_text(text: str) -> str:
    """Undo the corpus' escapes (backslash line breaks, entities with or without "&", escaped markup)."""
    if "\\" in text:  # the membership tests skip regexes most rows do not need (3x faster on AG News)
        text = _BACKSLASHES.sub(" ", _ESCAPED_NEWLINE.sub(" ", text))
    if ";" in text:
        text = _BARE_ENTITY.sub(r"&\1;", text)
        for _ in range(3):  # the corpus double-escapes some entities ("amp;amp;amp;")
            unescaped = html.unescape(text)
            if unescaped == text:
                break
            text = unescaped
        text = _HTML_TAG.sub(" ", text)
    return " ".join(text.split())


def normalise_text(text: str) -> str:
    """Duplicate-detection key: the same story up to case, spacing and punctuation maps to one key."""
    return dedupe_key(clean_text(text))


def dedupe_key(cleaned: str) -> str:
    """`normalise_text` of an already cleaned text."""
    return " ".join(_NON_WORD.sub("", cleaned.casefold()).split())


@dataclass(frozen=True)
class TextSplit:
    """Cleaned texts and 0-based labels, aligned by index."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def fingerprint(self) -> str:
        """sha256 over (label, text) pairs; length prefixes keep the encoding unambiguous."""
        digest = hashlib.sha256()
        for label, text in zip(self.labels, self.texts, strict=True):
            raw = text.encode("utf-8")
            digest.update(f"{label}:{len(raw)}:".encode())
            digest.update(raw)
        return digest.hexdigest()

    def label_counts(self) -> dict[int, int]:
        values, counts = np.unique(np.asarray(self.labels, dtype=np.int64), return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}

    def take(self, indices: Sequence[int]) -> TextSplit:
        return TextSplit(tuple(self.texts[i] for i in indices), tuple(self.labels[i] for i in indices))


# --- train-pool manifests --------------------------------------------------------------------------------

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
            f"({manifest.path.name}: rows of {manifest.source}) are not in this train split; load the full split "
            f"(the hub, or a folder holding all of it), or set data.train_pool=all to use this source's rows as "
            "they are")
    return picked


# --- subsets --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Subsets:
    """The row sets of one run; `leakage` counts candidate rows dropped as duplicates before sampling."""

    train: TextSplit
    val: TextSplit
    clean_train: TextSplit  # a fixed part of `train`, evaluated without augmentation or dropout
    test: TextSplit
    leakage: dict[str, int]


def make_subsets(splits: dict[str, TextSplit], cfg: DataConfig, seed: int) -> Subsets:
    """Seeded stratified subsets; val and test never share a `normalise_text` key with an earlier set. Without
    a "test" split (a dataset read from one file), test is drawn from the train-split rows train and val left.

    Duplicates are removed from the candidate pools before sampling, so the sizes asked for are exact.
    """
    rng = np.random.default_rng(seed)
    source, official_test = splits["train"], splits.get("test")
    labels = np.asarray(source.labels, dtype=np.int64)
    keys = [dedupe_key(t) for t in source.texts]  # TextSplit texts are already cleaned
    _require(cfg.train_samples, len(source), "data.train_samples", "the train split")
    train_idx = _stratified(rng, np.arange(len(source)), labels, cfg.train_samples)
    train_keys = {keys[i] for i in train_idx}

    rest = np.setdiff1d(np.arange(len(source)), train_idx)
    val_pool, val_hits, val_internal = _dedupe(rest, keys, {"train": train_keys})
    _require(cfg.val_samples, len(val_pool), "data.val_samples",
             "the train-split rows left after data.train_samples and the leakage guard")
    val_idx = _stratified(rng, val_pool, labels, cfg.val_samples)
    if official_test is None:  # a single file: its test rows are the ones train and val left, drawn as val's
        official_test = source.take(np.setdiff1d(rest, val_idx))

    test_labels = np.asarray(official_test.labels, dtype=np.int64)
    test_keys = [dedupe_key(t) for t in official_test.texts]
    test_pool, test_hits, test_internal = _dedupe(np.arange(len(official_test)), test_keys,
                                                  {"train": train_keys, "val": {keys[i] for i in val_idx}})
    if cfg.test_samples > 0:
        _require(cfg.test_samples, len(test_pool), "data.test_samples",
                 "the test-split rows left after the leakage guard")
        test_idx = _stratified(rng, test_pool, test_labels, cfg.test_samples)
    else:
        test_idx = test_pool
    clean_idx = _stratified(rng, train_idx, labels, min(cfg.val_samples, cfg.train_samples))
    leakage = {"val_dupes_of_train": val_hits["train"], "val_internal_dupes": val_internal,
               "test_dupes_of_train": test_hits["train"], "test_dupes_of_val": test_hits["val"],
               "test_internal_dupes": test_internal}
    return Subsets(train=source.take(train_idx), val=source.take(val_idx), clean_train=source.take(clean_idx),
                   test=official_test.take(test_idx), leakage=leakage)


def _require(wanted: int, available: int, key: str, what: str) -> None:
    if wanted > available:
        raise ChimeraError(f"config: {key} ({wanted}) is larger than {what} ({available} rows); lower {key}")


def _stratified(rng: np.random.Generator, candidates: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """n of `candidates` (sorted), each class in proportion to its share; largest remainder rounding."""
    candidate_labels = labels[candidates]
    classes, counts = np.unique(candidate_labels, return_counts=True)
    quota, remainder = np.divmod(n * counts, counts.sum())  # exact integer arithmetic, no float ties
    extra = n - int(quota.sum())
    order = np.lexsort((classes, -remainder))  # largest remainder first, then lowest class
    quota[order[:extra]] += 1
    picked = [rng.permutation(candidates[candidate_labels == c])[:k]
              for c, k in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=np.int64)


def _dedupe(candidates: np.ndarray, keys: list[str],
            earlier: dict[str, set[str]]) -> tuple[np.ndarray, dict[str, int], int]:
    """Candidates whose key is in no earlier set and not repeated; counts of what was dropped, by reason."""
    hits = dict.fromkeys(earlier, 0)
    internal, seen, kept = 0, set(), []
    for index in candidates:
        key = keys[index]
        source = next((name for name, taken in earlier.items() if key in taken), None)
        if source is not None:
            hits[source] += 1
        elif key in seen:
            internal += 1
        else:
            seen.add(key)
            kept.append(index)
    return np.asarray(kept, dtype=np.int64), hits, internal
