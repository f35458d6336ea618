"""The time-to-quality benchmark's comparison is plain arithmetic on two time_to_target lists, and its peer
(transformers' Trainer) trains and reports entries of the record's shape (no timing asserted here)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from bench.ttq_compare import compare_time_to_target, summary_lines
from chimera.matrix import load_matrix
from chimera.records.record import TargetTime, TimingPoint
from chimera.records.time_to_target import time_to_target

TARGETS = [("val_acc", 0.70), ("val_acc", 0.75), ("val_acc", 0.80)]


def entries(hits: dict[float, tuple[int, float, float]]) -> list[TargetTime]:
    """time_to_target entries for TARGETS; `hits` maps a target to (step, train_s, wall_s)."""
    curves = [SimpleNamespace(step=step, val_acc=target) for target, (step, _, _) in hits.items()]  # as the peer's
    timing = [TimingPoint(step=step, step_time_s=None, samples_per_s=None, train_s=train_s, wall_s=wall_s)
              for step, train_s, wall_s in hits.values()]
    return time_to_target(curves, timing, TARGETS, samples_per_step=32)


def test_a_target_both_reach_gets_both_sides_and_the_peer_over_ours_ratio():
    ours = entries({0.70: (100, 6.0, 10.0), 0.75: (160, 9.0, 16.0), 0.80: (300, 18.0, 30.0)})
    peer = entries({0.70: (200, 20.0, 25.0), 0.75: (400, 40.0, 48.0), 0.80: (900, 90.0, 105.0)})
    result = compare_time_to_target(ours, peer)
    row = result["targets"]["val_acc@0.75"]
    assert (row["ours_step"], row["ours_samples"], row["ours_wall_s"], row["ours_train_s"]) == (160, 5120, 16.0, 9.0)
    assert (row["peer_step"], row["peer_samples"], row["peer_wall_s"]) == (400, 12800, 48.0)
    assert row["wall_ratio"] == pytest.approx(3.0) and row["train_ratio"] == pytest.approx(40 / 9)
    assert row["faster"] == "ours"
    assert result["ratio_at_0.75"] == pytest.approx(3.0)
    assert list(result["targets"]) == ["val_acc@0.7", "val_acc@0.75", "val_acc@0.8"]


def test_a_target_the_peer_never_reaches_has_a_null_ratio():
    ours = entries({0.70: (100, 6.0, 10.0), 0.75: (160, 9.0, 16.0), 0.80: (300, 18.0, 30.0)})
    peer = entries({0.70: (60, 5.0, 8.0)})  # the peer stopped at its step budget below 0.75
    result = compare_time_to_target(ours, peer)
    never = result["targets"]["val_acc@0.8"]
    assert never["peer_step"] is None and never["peer_wall_s"] is None and never["ours_step"] == 300
    assert never["wall_ratio"] is None and never["faster"] is None
    assert result["ratio_at_0.75"] is None
    assert result["targets"]["val_acc@0.7"]["faster"] == "peer"  # 8 s against our 10 s
    assert summary_lines(result)[2] == "time to val_acc@0.8: ours step 300 in 30.0 s, peer never; peer/ours wall n/a"


def test_equal_times_are_a_tie_with_ratio_one():
    same = entries({0.70: (100, 6.0, 10.0), 0.75: (100, 6.0, 10.0), 0.80: (140, 8.0, 14.0)})
    result = compare_time_to_target(same, same)
    assert all(row["wall_ratio"] == 1.0 and row["faster"] == "tie" for row in result["targets"].values())
    # both first reach 0.70 and 0.75 at the same evaluation: same step, samples and seconds
    assert result["targets"]["val_acc@0.7"]["peer_samples"] == result["targets"]["val_acc@0.75"]["peer_samples"]


def test_targets_are_matched_by_value_not_position_and_unmatched_ones_kept():
    ours = entries({0.70: (100, 6.0, 10.0)})
    peer = list(reversed(entries({0.70: (100, 6.0, 20.0)}))) + [
        TargetTime(metric="val_loss", target=0.6, reached=True, step=80, samples=2560, train_s=5.0, wall_s=9.0,
                   value=0.59)]
    result = compare_time_to_target(ours, peer)
    assert result["targets"]["val_acc@0.7"]["wall_ratio"] == pytest.approx(2.0)
    only_peer = result["targets"]["val_loss@0.6"]
    assert only_peer["ours_step"] is None and only_peer["peer_step"] == 80 and only_peer["wall_ratio"] is None


# --- the peer itself, on tiny synthetic data --------------------------------------------------------------
TOPIC_WORDS = ("minister election treaty", "league striker season", "shares profit market", "software chip browser")
TINY = ["data.max_length=16", "data.vocab_size=256", "model.d_model=32", "model.n_heads=2", "model.d_ff=64",
        "model.n_layers=1", "train.batch_size=8", "train.warmup_steps=2", "train.max_steps=40", "train.eval_every=5"]


def synthetic_split(n: int, seed: int):
    from chimera.data.subsets import TextSplit

    rng = random.Random(seed)
    labels = tuple(i % 4 for i in range(n))
    texts = tuple(" ".join(rng.choice(TOPIC_WORDS[y].split() + ["the", "report", "today"]) for _ in range(10))
                  for y in labels)
    return TextSplit(texts, labels)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: extra threads only wait on a busy 2-core box
    yield
    torch.set_num_threads(threads)


def test_the_peer_clock_stops_at_the_last_target_or_the_step_budget():
    transformers = pytest.importorskip("transformers")
    from bench.ttq_peer import TargetClock

    def evaluate(clock, step, acc):
        control = transformers.TrainerControl()
        clock.on_step_begin(None, None, control)
        clock.on_step_end(None, None, control)
        return clock.on_evaluate(None, transformers.TrainerState(global_step=step), control,
                                 metrics={"eval_val_acc": acc, "eval_val_loss": 0.5}).should_training_stop

    clock = TargetClock(TARGETS, step_budget=100, samples_per_step=32)
    clock.on_train_begin(None, None, None)
    assert [evaluate(clock, step, acc) for step, acc in ((20, 0.72), (40, 0.79), (60, 0.81))] == [False, False, True]
    assert [e.step for e in clock.entries()] == [20, 40, 60]
    assert [t.step for t in clock.timing] == [20, 40, 60]
    assert clock.timing[-1].train_s <= clock.timing[-1].wall_s

    capped = TargetClock(TARGETS, step_budget=40, samples_per_step=32)
    assert [evaluate(capped, step, 0.5) for step in (20, 40)] == [False, True]
    assert not any(e.reached for e in capped.entries())


def test_peer_trains_a_few_steps_and_reports_time_to_target_entries(tmp_path, one_thread):
    pytest.importorskip("transformers")
    from bench.ttq_peer import run_peer
    from chimera.data.tokenizer import build_tokenizer

    config = load_matrix().resolve("fixed/dense", "ci", device="cpu", overrides=TINY)
    train, val = synthetic_split(64, seed=0), synthetic_split(32, seed=1)
    tokenizer = build_tokenizer(train.texts, vocab_size=256, lowercase=True, cache_dir=tmp_path / "cache")
    run = run_peer(config, train=train, val=val, tokenizer=tokenizer, out_dir=tmp_path / "peer", step_budget=10)

    assert 0 < run.steps <= 10  # stopped by the budget or, on this easy data, by reaching every target
    assert [point.step for point in run.curves] == list(range(5, run.steps + 1, 5))
    assert all(0 <= point.val_acc <= 1 for point in run.curves)
    walls = [t.wall_s for t in run.timing]
    assert walls == sorted(walls) and all(0 < t.train_s <= t.wall_s for t in run.timing)
    assert [(e.metric, e.target) for e in run.time_to_target] == config.evaluation.targets()
    for entry in run.time_to_target:
        assert (entry.step is None) == (not entry.reached)
        if entry.reached:
            assert entry.samples == entry.step * 8 and entry.wall_s is not None
    assert run.params > 0 and run.optim
