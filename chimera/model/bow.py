"""The linear reference every transformer cell must beat: a fastText-style bag of n-grams.

Joulin et al., "Bag of Tricks for Efficient Text Classification" (2017): the mean of the embeddings of
a text's words and hashed word bigrams, then one linear layer. On AG News it is a strong baseline, so
a transformer cell that ends below it on the same rows has learnt less than word counts carry.
"""

from __future__ import annotations

import torch
from torch import nn

from chimera.config import ModelConfig
from chimera.model.encoder import ClassifierOutput
from chimera.model.layers import Dropout

BIGRAM_HASH_MULTIPLIER = 1_000_003  # a prime: (a · P + b) mod buckets spreads (a, b) pairs evenly


class BagOfNgramsClassifier(nn.Module):
    """`forward(input_ids (B, T), attention_mask (B, T) bool) -> ClassifierOutput`, like the encoder.

    Token ids are the unigrams; each adjacent pair of real tokens is a bigram hashed into
    `cfg.ngram_buckets` extra rows of the same table (rows `vocab_size ...`). Padding maps to
    `pad_id`, which `nn.EmbeddingBag` leaves out of the mean. `cfg.d_model` is the embedding width;
    the transformer fields of `cfg` are unused.
    """

    def __init__(self, cfg: ModelConfig, *, vocab_size: int, max_length: int, num_classes: int = 4,
                 pad_id: int = 0) -> None:
        super().__init__()
        self.cfg, self.vocab_size, self.pad_id, self.max_length = cfg, vocab_size, pad_id, max_length
        self.bag = nn.EmbeddingBag(vocab_size + cfg.ngram_buckets, cfg.d_model, mode="mean", padding_idx=pad_id)
        self.dropout = Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_model, num_classes)
        with torch.no_grad():  # fastText's initialisation: small uniform inputs, zero output layer
            self.bag.weight.uniform_(-1.0 / cfg.d_model, 1.0 / cfg.d_model)
            self.bag.weight[pad_id].zero_()
            self.head.weight.zero_()
            self.head.bias.zero_()

    def ngram_ids(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, 2T - 1): the unigram ids, then the hashed bigram ids; padding positions hold pad_id."""
        unigrams = input_ids.masked_fill(~mask, self.pad_id)  # (B, T)
        first, second = input_ids[:, :-1], input_ids[:, 1:]  # (B, T - 1) each
        hashed = self.vocab_size + (first * BIGRAM_HASH_MULTIPLIER + second) % self.cfg.ngram_buckets
        bigrams = hashed.masked_fill(~(mask[:, :-1] & mask[:, 1:]), self.pad_id)  # (B, T - 1)
        return torch.cat([unigrams, bigrams], dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ClassifierOutput:
        pooled = self.bag(self.ngram_ids(input_ids, attention_mask.bool()))  # (B, d_model) mean over n-grams
        logits = self.head(self.dropout(pooled))  # (B, num_classes)
        return ClassifierOutput(logits=logits, aux_loss=logits.new_zeros(()), moe=[])
