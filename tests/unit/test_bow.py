"""The linear reference: a fastText-style bag of word and hashed bigram embeddings, then one linear layer."""

from __future__ import annotations

import torch

from chimera.config import ModelConfig
from chimera.model.bow import BagOfNgramsClassifier
from chimera.model.encoder import parameter_counts, weight_decay_groups

VOCAB, PAD = 50, 0
CFG = ModelConfig(arch="bag_of_ngrams", d_model=8, ngram_buckets=97, dropout=0.0)


def build(cfg: ModelConfig = CFG) -> BagOfNgramsClassifier:
    torch.manual_seed(0)
    model = BagOfNgramsClassifier(cfg, vocab_size=VOCAB, max_length=16, num_classes=4, pad_id=PAD)
    torch.nn.init.normal_(model.head.weight)  # fastText starts the output layer at zero; make it informative
    return model.eval()


def test_the_output_is_the_linear_layer_of_the_mean_of_word_and_bigram_embeddings():
    model = build()
    ids = torch.tensor([[1, 7, 9, 4]])
    out = model(ids, torch.ones_like(ids, dtype=torch.bool))
    table = model.bag.weight
    bigrams = [VOCAB + (a * 1_000_003 + b) % 97 for a, b in ((1, 7), (7, 9), (9, 4))]
    expected = model.head(table[[1, 7, 9, 4, *bigrams]].mean(0, keepdim=True))
    assert torch.allclose(out.logits, expected, atol=1e-6)
    assert out.logits.shape == (1, 4) and float(out.aux_loss) == 0.0 and out.moe == []


def test_padding_changes_nothing():
    model = build()
    ids = torch.tensor([[1, 7, 9, 4, PAD, PAD], [3, 3, 2, 8, 5, 6]])
    mask = ids != PAD
    mask[1] = True
    short = model(ids[:1, :4], mask[:1, :4]).logits
    padded = model(ids, mask).logits
    assert torch.allclose(padded[0], short[0], atol=1e-6)


def test_bigram_ids_live_in_their_own_rows_and_padding_maps_to_the_pad_row():
    model = build()
    ids = torch.tensor([[1, 7, PAD, PAD]])
    grams = model.ngram_ids(ids, ids != PAD)
    unigrams, bigrams = grams[0, :4].tolist(), grams[0, 4:].tolist()
    assert unigrams == [1, 7, PAD, PAD]
    assert VOCAB <= bigrams[0] < VOCAB + 97 and bigrams[1:] == [PAD, PAD]  # no bigram touches padding


def test_word_order_matters_only_through_bigrams():
    model = build()
    forward, backward = torch.tensor([[1, 7, 9]]), torch.tensor([[9, 7, 1]])
    full = torch.ones(1, 3, dtype=torch.bool)
    assert not torch.allclose(model(forward, full).logits, model(backward, full).logits)
    no_bigrams = build(ModelConfig(arch="bag_of_ngrams", d_model=8, ngram_buckets=97, dropout=0.0))
    with torch.no_grad():
        no_bigrams.bag.weight[VOCAB:] = 0.0  # bigram rows zeroed: order no longer matters
    a = no_bigrams.bag(no_bigrams.ngram_ids(forward, full))
    b = no_bigrams.bag(no_bigrams.ngram_ids(backward, full))
    assert torch.allclose(a, b, atol=1e-7)


def test_the_embedding_table_counts_as_embedding_and_is_not_decayed():
    model = build()
    counts = parameter_counts(model)
    assert counts["embedding"] == (VOCAB + 97) * 8
    assert counts["non_embedding"] == 8 * 4 + 4 and counts["active"] == counts["total"]
    decay, no_decay = weight_decay_groups(model, 0.1)
    assert [p.shape for p in decay["params"]] == [model.head.weight.shape]
    assert any(p is model.bag.weight for p in no_decay["params"])


def test_it_learns_a_word_level_task_in_a_few_steps():
    torch.manual_seed(1)
    model = BagOfNgramsClassifier(CFG, vocab_size=VOCAB, max_length=8, num_classes=4, pad_id=PAD)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    labels = torch.randint(0, 4, (64,))
    ids = torch.randint(10, VOCAB, (64, 8))
    ids[:, 3] = labels + 1  # one word per class gives the label away
    mask = torch.ones_like(ids, dtype=torch.bool)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(ids, mask).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (model(ids, mask).logits.argmax(-1) == labels).float().mean() > 0.95
