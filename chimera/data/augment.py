"""Word-level text augmentation for training rows: WordNet synonyms, word dropout, neighbour swaps.

The output is a pure function of (text, rng state), so a loader that seeds `rng` from
(seed, epoch, index) reproduces every augmented row after a resume.
"""

from __future__ import annotations

import functools
import random
import warnings

import nltk
from nltk.corpus.reader.wordnet import WordNetCorpusReader
from nltk.data import ZipFilePathPointer

from chimera.config import AugmentConfig
from chimera.errors import ChimeraError

WORDNET_FIX = ("run `python -m nltk.downloader wordnet` or, offline on Debian, `scripts/prepare_wordnet.sh`; "
               "or set augment.synonym_prob=0")
MIN_SYNONYM_LENGTH = 4  # shorter words are mostly function words with noisy senses ("in" -> "inch")


def require_wordnet() -> None:
    """Fail with the fix when NLTK cannot load WordNet, instead of augmenting without synonyms."""
    _wordnet()


def _wordnet() -> WordNetCorpusReader:
    root = _wordnet_root()
    try:
        return _load_wordnet(root)
    except (LookupError, OSError, ValueError, AssertionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ChimeraError(f"WordNet corpus at {root} is incomplete ({first}); {WORDNET_FIX}") from None


def _wordnet_root() -> str:
    """Where NLTK's data path holds WordNet: unpacked, or as the corpora/wordnet.zip NLTK's downloader
    writes (one 11 MB file, what an offline kit carries); looked up on every call, so a changed
    nltk.data.path is honoured."""
    for resource in ("corpora/wordnet", "corpora/wordnet.zip/wordnet/"):
        try:
            pointer = nltk.data.find(resource)
        except LookupError:
            continue
        # a zip entry names a folder only with its trailing slash, which str() of the pointer drops
        return f"{pointer}/" if isinstance(pointer, ZipFilePathPointer) else str(pointer)
    raise ChimeraError(f"WordNet corpus not found on the NLTK data path; {WORDNET_FIX}")


class _EnglishWordNet(WordNetCorpusReader):
    """WordNet without the multilingual (OMW) version map, which we never use.

    NLTK builds that map on load by reading index.sense twice; skipping it loads 2-3x faster.
    """

    def map_wn(self, version: str = "wordnet") -> None:
        return None


@functools.lru_cache(maxsize=2)
def _load_wordnet(root: str) -> WordNetCorpusReader:
    with warnings.catch_warnings():  # "multilingual functions are not available": intended
        warnings.simplefilter("ignore")
        reader = _EnglishWordNet(root, None)
    reader.synsets("market")
    return reader


class Augmenter:
    """Applies per word, in this order: synonym replacement, dropout, swap with the right neighbour."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config
        self._synonyms: dict[str, tuple[str, ...]] = {}
        # Resolved once: nltk.data.find walks the data path and costs about a millisecond per call.
        self._wordnet = _wordnet() if config.enabled and config.synonym_prob > 0 else None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_wordnet": None}  # worker processes load their own reader

    def __call__(self, text: str, rng: random.Random) -> str:
        cfg = self.config
        if not cfg.enabled:
            return text
        words = text.split()
        if not words:
            return text
        if cfg.synonym_prob > 0:
            words = [self._maybe_synonym(word, rng) for word in words]
        if cfg.word_dropout > 0:
            kept = [word for word in words if rng.random() >= cfg.word_dropout]
            words = kept or [words[rng.randrange(len(words))]]  # never drop every word
        if cfg.word_shuffle > 0:
            for i in range(len(words) - 1):
                if rng.random() < cfg.word_shuffle:
                    words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words)

    def _maybe_synonym(self, word: str, rng: random.Random) -> str:
        if rng.random() >= self.config.synonym_prob:
            return word
        start, end = _core_span(word)
        core = word[start:end]
        # Capitalised words are mostly names in news text ("Bush", "Apple"): leave them alone.
        if len(core) < MIN_SYNONYM_LENGTH or not core.isalpha() or not core.islower():
            return word
        choices = self.synonyms(core)
        return word[:start] + rng.choice(choices) + word[end:] if choices else word

    def synonyms(self, word: str) -> tuple[str, ...]:
        """Sorted single-word WordNet lemmas of `word`, excluding itself; cached per word."""
        if word not in self._synonyms:
            if self._wordnet is None:
                self._wordnet = _wordnet()
            names = {lemma.name() for synset in self._wordnet.synsets(word) for lemma in synset.lemmas()}
            # lowercase only: a proper-noun sense ("Bush" for "bush") is not a synonym in running text
            self._synonyms[word] = tuple(sorted(n for n in names
                                                if n.isalpha() and n.islower() and n != word))
        return self._synonyms[word]


def _core_span(word: str) -> tuple[int, int]:
    """[start, end) of `word` without leading and trailing punctuation, e.g. '"rise,"' -> rise."""
    start, end = 0, len(word)
    while start < end and not word[start].isalnum():
        start += 1
    while end > start and not word[end - 1].isalnum():
        end -= 1
    return start, end
