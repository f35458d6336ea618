"""The WordPiece tokenizer trained on a run's training subset, cached on disk by a hash of what it was trained on.

The saved JSON's sha256 goes into the run record, so two records with the same fingerprint saw exactly
the same token ids. Special tokens have fixed ids: [PAD]=0, [UNK]=1, [CLS]=2; every encoding starts
with [CLS] (counted in `max_length`). Ids are for the model only: there is no decoder.

The DataLoaders that feed those ids have an order and an augmentation that are pure functions of
(seed, epoch, index): a resumed run rebuilds the loader for its epoch and skips the batches already seen,
and gets exactly the rows, order and augmentation of the interrupted run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tokenizers
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from torch.utils.data import DataLoader, Dataset

from chimera.data.augment import Augmenter
from chimera.data.subsets import TextSplit
from chimera.errors import ChimeraError
from chimera.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

PAD, UNK, CLS = "[PAD]", "[UNK]", "[CLS]"
SPECIAL_TOKENS = (PAD, UNK, CLS)  # ids follow this order
CACHE_FORMAT = "wordpiece-v1"  # bump when the pipeline below changes, so old cache files are not reused


@dataclass(frozen=True, eq=False)
class TokenizerBundle:
    """A trained tokenizer with the ids the model and collate need and the fingerprint for records."""

    tokenizer: Tokenizer
    sha256: str  # of the saved tokenizer JSON
    path: Path
    pad_id: int
    unk_id: int
    cls_id: int

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()


def default_cache_dir() -> Path:
    """$CHIMERA_CACHE_DIR, else $XDG_CACHE_HOME/chimera, else ~/.cache/chimera."""
    if os.environ.get("CHIMERA_CACHE_DIR"):
        return Path(os.environ["CHIMERA_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "chimera"
    return Path.home() / ".cache" / "chimera"


def build_tokenizer(texts: Sequence[str], *, vocab_size: int, lowercase: bool,
                    cache_dir: Path | None = None) -> TokenizerBundle:
    """Load the tokenizer trained on exactly these texts and settings, training and caching it if new."""
    key = _cache_key(texts, vocab_size=vocab_size, lowercase=lowercase)
    path = (cache_dir or default_cache_dir()) / "tokenizers" / f"{key}.json"
    if path.is_file():
        try:
            return _bundle(path.read_bytes(), path)
        except Exception as exc:  # a truncated or foreign file: retrain rather than fail the run
            log.warning("tokenizer cache %s unreadable (%s); retraining", path, exc)
    raw = _train(texts, vocab_size=vocab_size, lowercase=lowercase).to_str().encode("utf-8")
    _write_atomic(path, raw)
    return _bundle(raw, path)


def encode_batch(bundle: TokenizerBundle, texts: Sequence[str], max_length: int, *,
                 fixed_width: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, T) with T the longest row after truncation to max_length, or
    max_length itself with `fixed_width` (one shape for every batch: what a compiled step needs).

    An empty text becomes [CLS] [UNK], so no row is all padding.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 ([CLS] plus one token), got {max_length}")
    rows = [e.ids[:max_length] if len(e.ids) > 1 else [bundle.cls_id, bundle.unk_id]
            for e in bundle.tokenizer.encode_batch(list(texts))]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = max_length if fixed_width else int(lengths.max()) if rows else 1
    ids = torch.tensor([r + [bundle.pad_id] * (width - len(r)) for r in rows], dtype=torch.long)
    mask = torch.arange(width) < lengths[:, None]  # (B, T)
    return ids.view(len(rows), width), mask


def token_stats(bundle: TokenizerBundle, texts: Sequence[str], max_length: int) -> dict[str, float]:
    """unk_rate: share of text tokens ([CLS] excluded) that are [UNK]; truncation_rate: share of texts cut."""
    encodings = bundle.tokenizer.encode_batch(list(texts))
    tokens = unknown = truncated = 0
    for encoding in encodings:
        specials = encoding.special_tokens_mask
        content = [i for i, special in zip(encoding.ids, specials, strict=True) if not special]
        tokens += len(content)
        unknown += sum(i == bundle.unk_id for i in content)
        truncated += len(encoding.ids) > max_length
    return {"unk_rate": unknown / tokens if tokens else 0.0,
            "truncation_rate": truncated / len(encodings) if encodings else 0.0,
            "mean_tokens": (tokens / len(encodings) + 1) if encodings else 0.0}  # + 1 for [CLS]


def _cache_key(texts: Sequence[str], *, vocab_size: int, lowercase: bool) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}|tokenizers {tokenizers.__version__}|vocab {vocab_size}|"
                            f"lowercase {lowercase}|".encode())
    for text in texts:
        raw = text.encode("utf-8")
        digest.update(f"{len(raw)}:".encode())
        digest.update(raw)
    return digest.hexdigest()


def _train(texts: Sequence[str], *, vocab_size: int, lowercase: bool) -> Tokenizer:
    """Deterministic WordPiece training.

    No "##" continuation prefix: tokenizers creates the "##x" pieces in hash-map order, which changes
    ids and merge tie-breaks from run to run (huggingface/tokenizers#1794). Without a prefix every
    starting piece comes from the sorted alphabet, so the same texts give the same file. The cost: a
    piece inside a word shares its id with the same piece at the start of a word.
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix=""))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                      strip_accents=None, lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # split on whitespace and punctuation
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                        show_progress=False, continuing_subword_prefix="")
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    cls_id = tokenizer.token_to_id(CLS)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{CLS} $A",
                                                             special_tokens=[(CLS, cls_id)])
    return tokenizer


def _bundle(raw: bytes, path: Path) -> TokenizerBundle:
    tokenizer = Tokenizer.from_str(raw.decode("utf-8"))
    ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
    if ids != [0, 1, 2]:
        raise ValueError(f"special token ids {ids}, expected [0, 1, 2]")
    return TokenizerBundle(tokenizer=tokenizer, sha256=hashlib.sha256(raw).hexdigest(), path=path,
                           pad_id=ids[0], unk_id=ids[1], cls_id=ids[2])


def _write_atomic(path: Path, raw: bytes) -> None:
    """`atomic_write_bytes`: concurrent runs sharing the cache never see half a file."""
    try:
        atomic_write_bytes(path, raw)
    except OSError as exc:
        raise ChimeraError(f"{path.parent}: cannot write the tokenizer cache ({exc.strerror or exc}); "
                           "set CHIMERA_CACHE_DIR to a writable folder") from None


# --- loaders --------------------------------------------------------------------------------------------

EPOCH_STRIDE = 1_000_003  # prime: seed * stride + epoch never collides for epochs below it


class TextDataset(Dataset):
    """(text, label) rows; with an augmenter, row i of an epoch is augmented with its own seeded rng."""

    def __init__(self, split: TextSplit, *, augmenter: Augmenter | None = None, seed: int = 0,
                 epoch: int = 0) -> None:
        self.split, self.augmenter, self.seed, self.epoch = split, augmenter, seed, epoch

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[str, int]:
        text = self.split.texts[index]
        if self.augmenter is not None:
            text = self.augmenter(text, random.Random(f"{self.seed}:{self.epoch}:{index}"))
        return text, self.split.labels[index]


class EncodeCollate:
    """Tokenizes a batch, padded to its longest row or (`fixed_width`) to max_length; a module-level class
    so worker processes can pickle it."""

    def __init__(self, bundle: TokenizerBundle, max_length: int, *, fixed_width: bool = False) -> None:
        self.bundle, self.max_length, self.fixed_width = bundle, max_length, fixed_width

    def __call__(self, rows: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
        texts, labels = zip(*rows, strict=True)
        input_ids, attention_mask = encode_batch(self.bundle, texts, self.max_length, fixed_width=self.fixed_width)
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "labels": torch.tensor(labels, dtype=torch.long)}


def epoch_order(n: int, *, seed: int, epoch: int) -> list[int]:
    """The row order of one epoch, from its own generator so global RNG state never matters."""
    generator = torch.Generator().manual_seed(seed * EPOCH_STRIDE + epoch)
    return torch.randperm(n, generator=generator).tolist()


def train_loader(split: TextSplit, bundle: TokenizerBundle, *, augmenter: Augmenter | None, seed: int,
                 epoch: int, batch_size: int, max_length: int, pin_memory: bool = False, num_workers: int = 0,
                 drop_last: bool = True, fixed_width: bool = False) -> DataLoader:
    """One epoch of shuffled, optionally augmented training batches (`fixed_width`: all batch_size x max_length)."""
    dataset = TextDataset(split, augmenter=augmenter, seed=seed, epoch=epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=epoch_order(len(split), seed=seed, epoch=epoch),
                      collate_fn=EncodeCollate(bundle, max_length, fixed_width=fixed_width), drop_last=drop_last,
                      pin_memory=pin_memory, num_workers=num_workers)


class EncodedDataset(Dataset):
    """Rows tokenized once, up front: an evaluation set never changes, and re-tokenizing it at every
    evaluation cost a fifth of the evaluation's time (fixed/dense, full profile)."""

    def __init__(self, split: TextSplit, bundle: TokenizerBundle, max_length: int) -> None:
        ids, mask = encode_batch(bundle, split.texts, max_length)
        self.rows = [row[:length] for row, length in zip(ids, mask.sum(1).tolist(), strict=True)]
        self.labels = split.labels

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.rows[index], self.labels[index]


IGNORED_LABEL = -100  # a filler row's label: cross_entropy's default ignore_index, and not counted in accuracy


class PadCollate:
    """Pads pre-tokenized rows to the longest in the batch: the same tensors `EncodeCollate` makes.

    With `width` and `rows` (compiled steps: one eval shape, so nothing recompiles or re-captures) every batch
    is rows x width; a short last batch is filled with rows of no token at all (mask all False) whose label is
    IGNORED_LABEL, so they enter no metric and, MoE layers take their mask, no routing statistic."""

    def __init__(self, pad_id: int, *, width: int | None = None, rows: int | None = None) -> None:
        self.pad_id, self.width, self.rows = pad_id, width, rows

    def __call__(self, rows: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
        ids, labels = zip(*rows, strict=True)
        lengths = torch.tensor([len(r) for r in ids], dtype=torch.long)
        input_ids = torch.nn.utils.rnn.pad_sequence(list(ids), batch_first=True, padding_value=self.pad_id)
        label_tensor = torch.tensor(labels, dtype=torch.long)
        if self.width is not None:
            input_ids = torch.nn.functional.pad(input_ids, (0, self.width - input_ids.shape[1]), value=self.pad_id)
        if self.rows is not None and len(ids) < self.rows:
            filler = self.rows - len(ids)
            input_ids = torch.cat([input_ids, input_ids.new_full((filler, input_ids.shape[1]), self.pad_id)])
            lengths = torch.cat([lengths, lengths.new_zeros(filler)])
            label_tensor = torch.cat([label_tensor, label_tensor.new_full((filler,), IGNORED_LABEL)])
        return {"input_ids": input_ids, "attention_mask": torch.arange(input_ids.shape[1]) < lengths[:, None],
                "labels": label_tensor}


def eval_loader(split: TextSplit, bundle: TokenizerBundle, *, batch_size: int, max_length: int,
                pin_memory: bool = False, num_workers: int = 0, fixed_shape: bool = False) -> DataLoader:
    """Every row once, in order, never augmented; tokenized once when the loader is built. `fixed_shape`:
    every batch batch_size x max_length (a short last one filled with ignored rows; see PadCollate)."""
    collate = (PadCollate(bundle.pad_id, width=max_length, rows=batch_size) if fixed_shape
               else PadCollate(bundle.pad_id))
    return DataLoader(EncodedDataset(split, bundle, max_length), batch_size=batch_size, shuffle=False,
                      drop_last=False, collate_fn=collate, pin_memory=pin_memory, num_workers=num_workers)
