"""Data pipeline throughput (augment + tokenize + collate, one epoch through `train_loader`) vs the step.

    pytest bench/test_bench_data.py --benchmark-only

Texts are synthetic news-like sentences built from a fixed word list (AG News text never goes into
the repository), with AG News' shape: a short title and a one- or two-sentence description, about
40 words in all. Augmentation needs WordNet (scripts/prepare_wordnet.sh). extra_info compares the
pipeline's samples/s with the matching cell's training consumption (batch / median step time of
test_bench_train_step in this session, or a few steps measured here when that did not run):
`data_to_step_ratio` should be >= 10, so training never waits for data.
"""

from __future__ import annotations

import itertools
import random
import statistics
import time

import pytest

from bench.harness import StepBench, transformer_cells
from chimera.data.augment import Augmenter
from chimera.data.subsets import TextSplit
from chimera.data.tokenizer import build_tokenizer, train_loader
from chimera.matrix import load_matrix

CELLS = transformer_cells()
FUNCTION = ("the", "a", "of", "to", "in", "and", "on", "for", "with", "at", "by", "its", "from", "as", "that",
            "has", "is", "was", "said", "after", "over", "will", "new", "but", "more", "than", "into")
CONTENT = """market shares company profit quarter stocks investors oil prices bank deal sales growth percent
government minister election president officials talks police killed attack troops security iraq nuclear
team game season coach victory championship players league match final record injury win scored goals
software internet computer technology search users network phone online service chip wireless music
space scientists study research planet drug health energy climate report million billion analysts rose
fell rally record lower higher early late week month year today yesterday plan court ruling judge trial
workers union strike airline flight rates economy inflation dollar trade exports china japan europe
leaders summit agreement peace rebels fighting capital city village storm hurricane damage power fans
launch product rival merger acquisition offer bid board chief executive shareholders earnings forecast
""".split()


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """News-like rows: Title Case headline + description; Zipf-weighted content words (as in real text)."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(CONTENT))]

    def words(k: int) -> list[str]:
        return [rng.choice(FUNCTION) if rng.random() < 0.45 else rng.choices(CONTENT, weights)[0] for _ in range(k)]

    rows = []
    for _ in range(n):
        title = " ".join(w.capitalize() for w in words(rng.randint(5, 10)))
        body = " ".join(words(rng.randint(20, 40)))
        rows.append(f"{title} ({rng.choice(('AP', 'Reuters', 'AFP'))}) {body[0].upper()}{body[1:]}.")
    return rows


def consumption_rate(cell, config, policy, accelerator, step_medians) -> tuple[float, str]:
    """Training samples/s of `cell`: from this session's train-step benchmark, else 3 steps timed here."""
    if (policy.precision, cell) in step_medians:
        return config.train.batch_size / step_medians[policy.precision, cell], "test_bench_train_step median"
    bench = StepBench.for_config(config, policy, accelerator)
    bench.step()  # warm-up: allocates AdamW state
    times = []
    for _ in range(3):
        start = time.perf_counter()
        bench.step()
        times.append(time.perf_counter() - start)
    return bench.samples / statistics.median(times), "3 steps timed in test_bench_data"


@pytest.mark.benchmark(group="data")
@pytest.mark.parametrize("cell", CELLS)
def test_data_pipeline(benchmark, device_policy, accelerator, bench_profile, bench_rounds, step_medians,
                       tmp_path_factory, cell):
    config = load_matrix().resolve(cell, bench_profile, device=accelerator.device.type)
    dc, rows = config.data, config.data.train_samples
    texts = synthetic_texts(rows)
    split = TextSplit(tuple(texts), tuple(i % 4 for i in range(rows)))
    bundle = build_tokenizer(texts, vocab_size=dc.vocab_size, lowercase=dc.lowercase,
                             cache_dir=tmp_path_factory.getbasetemp() / "tokenizers")
    augmenter = Augmenter(config.augment) if config.augment.enabled else None
    epochs = itertools.count()

    def one_epoch() -> int:  # as the trainer consumes it: a fresh loader per epoch, through accelerate
        loader = accelerator.prepare(train_loader(split, bundle, augmenter=augmenter, seed=config.seed,
                                                  epoch=next(epochs), batch_size=config.train.batch_size,
                                                  max_length=dc.max_length))
        return sum(len(batch["labels"]) for batch in loader)

    samples = rows - rows % config.train.batch_size  # drop_last
    benchmark.extra_info.update(cell=cell, bench_profile=bench_profile, rows=samples,
                                augment=config.augment.enabled, max_length=dc.max_length,
                                mean_words=statistics.fmean(len(t.split()) for t in texts))
    rounds, warmup = bench_rounds.data
    benchmark.pedantic(one_epoch, rounds=rounds, warmup_rounds=warmup, iterations=1)
    if benchmark.stats is None:
        return
    data_rate = samples / benchmark.stats.stats.median
    step_rate, source = consumption_rate(cell, config, device_policy, accelerator, step_medians)
    benchmark.extra_info.update(samples_per_s=data_rate, train_samples_per_s=step_rate,
                                train_rate_source=source, data_to_step_ratio=data_rate / step_rate)
