"""The peer: `transformers`' BertForSequenceClassification with the dense cells' shapes, timed like ours.

    pytest bench/test_bench_peer.py --benchmark-only

Same hidden size, layers, heads, intermediate size, max positions (= max_length), vocabulary,
4 labels, dropout (hidden and attention) as the cell, in each benchmarked precision (as ours), same synthetic batch,
and the same step as chimera's `Recipe.step`: cross-entropy with the cell's label smoothing,
`accelerator.backward`, gradient clipping, the trainer's own optimiser and schedule
(`chimera.train.run_setup`: fused AdamW, same parameter groups and hyperparameters), so the ratio
measures the model, not the optimiser. BERT is post-LN with a pooler and token-type embeddings; it
is the default choice users would otherwise make. `speedup_vs_peer` = peer median / our dense step
median of this session in the same precision (goal >= 1.25). `transformers` is a bench-only
dependency, imported here only.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.harness import synchronize, synthetic_batch, transformer_cells
from chimera.matrix import load_matrix
from chimera.train.run_setup import NUM_CLASSES, build_optimizer, build_schedule

DENSE_CELLS = [c for c in transformer_cells() if load_matrix().resolve(c, "full").model.ffn == "dense"]


def bert_peer(config):
    transformers = pytest.importorskip("transformers")
    m = config.model
    bert = transformers.BertConfig(
        vocab_size=config.data.vocab_size, hidden_size=m.d_model, num_hidden_layers=m.n_layers,
        num_attention_heads=m.n_heads, intermediate_size=m.d_ff, max_position_embeddings=config.data.max_length,
        hidden_dropout_prob=m.dropout, attention_probs_dropout_prob=m.dropout, num_labels=NUM_CLASSES,
        hidden_act="gelu")
    return transformers.BertForSequenceClassification(bert)


def peer_step(config, policy, accelerator):
    """(model, step): BERT prepared like the trainer's model, and a step that is
    chimera.train.recipe.Recipe.step with BERT's forward."""
    tc = config.train
    torch.manual_seed(config.seed)
    model = bert_peer(config)
    optimizer = build_optimizer(model, tc, policy)  # the trainer's own optimiser and schedule
    schedule = build_schedule(optimizer, tc)
    model, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
    model.train()
    batch = synthetic_batch(config, accelerator.device)
    attention_mask = batch["attention_mask"].long()  # as a Hugging Face tokenizer returns it
    max_norm = tc.grad_clip or math.inf

    def step() -> float:
        logits = model(input_ids=batch["input_ids"], attention_mask=attention_mask).logits
        loss = F.cross_entropy(logits.float(), batch["labels"], label_smoothing=tc.label_smoothing)
        assert torch.isfinite(loss)
        accelerator.backward(loss)
        assert math.isfinite(float(accelerator.clip_grad_norm_(model.parameters(), max_norm)))
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        synchronize(accelerator.device)
        return value

    return model, step


@pytest.mark.benchmark(group="peer")
@pytest.mark.parametrize("cell", DENSE_CELLS)
def test_peer_bert_step(benchmark, device_policy, accelerator, bench_profile, bench_rounds, step_medians, cell,
                        precision):
    config = load_matrix().resolve(cell, bench_profile, device=accelerator.device.type)
    tc = config.train
    model, step = peer_step(config, device_policy, accelerator)
    benchmark.extra_info.update(cell=cell, bench_profile=bench_profile, precision=precision,
                                mixed_precision=accelerator.mixed_precision,
                                peer="transformers.BertForSequenceClassification",
                                attn_implementation=accelerator.unwrap_model(model).config._attn_implementation,
                                batch_size=tc.batch_size, seq_len=config.data.max_length,
                                params=sum(p.numel() for p in model.parameters()))
    rounds, warmup = bench_rounds.peer
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=warmup, iterations=1)
    if benchmark.stats is None:
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info["samples_per_s"] = tc.batch_size * accelerator.num_processes / median
    ours = step_medians.get((precision, cell))  # our step in the same precision: a like-for-like ratio
    if ours is not None:
        benchmark.extra_info.update(ours_median_s=ours, speedup_vs_peer=median / ours)
