"""AG News text: undo the corpus' escapes, the duplicate-detection key, and a split of texts with labels.

Pure functions and one frozen dataclass, shared by the reader (`agnews`), the subsets and the
leakage scan.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
