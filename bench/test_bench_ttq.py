"""Time to quality against the peer a user would write instead: our trainer vs transformers' Trainer + BERT.

    CHIMERA_DATA_DIR=path/to/ag_news pytest bench/test_bench_ttq.py --benchmark-only -s

Step speed (test_bench_peer.py) says nothing about how soon a setup is *useful*; MLPerf Training's
answer is time to a target quality, evaluations included. One pedantic round trains OURS (fixed/dense,
seed 0, to early stopping, `chimera.train.run.run_plan`; its record's `time_to_target`) and then the
PEER (bench/ttq_peer.py: same rows, tokenizer, shapes and hyper-parameters, no augmentation; until it
reaches every target or STEP_BUDGET steps), one after the other in this process, so both see the same
machine minutes apart: with other load on it the figures are not this machine's speed (the load
average at start and end is recorded). extra_info (bench/ttq_compare.py): per target each side's step,
samples and seconds, `wall_ratio` = peer wall_s / ours wall_s (> 1: ours got there sooner), and the
headline `ratio_at_0.75`. The timed round itself (both runs together) is not the figure to read.
Minutes, not seconds, so `make bench-ci` leaves it out; real AG News required (bench/conftest.py).
Under CHIMERA_BENCH_ROUNDS=tiny (the README smoke run, scripts/readme_smoke.py) both sides stop after
TINY_STEPS steps: the code path runs end to end, and its figures mean nothing.
"""

from __future__ import annotations

import os

import pytest
import torch

from bench.ttq_compare import compare_time_to_target, summary_lines
from chimera.matrix import load_matrix
from chimera.train.device import cpu_name
from chimera.train.plan import make_plan
from chimera.train.run import run_plan

CELL, SEED = "fixed/dense", 0
STEP_BUDGET = 1500  # caps the peer (a plateau below a target still ends): ~23 passes over the full profile's rows
TINY_STEPS = 20  # both sides' cap under tiny rounds: one evaluation each, seconds instead of minutes
TINY_OVERRIDES = (f"train.max_steps={TINY_STEPS}", "train.warmup_steps=5")


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


@pytest.mark.benchmark(group="time-to-quality")
def test_time_to_quality_vs_trainer_peer(benchmark, device_policy, accelerator, bench_profile, bench_tiny,
                                         data_dir, tmp_path, bench_summary):
    pytest.importorskip("transformers")
    from bench.ttq_peer import load_run_data, run_peer

    step_budget = TINY_STEPS if bench_tiny else STEP_BUDGET
    config = load_matrix().resolve(CELL, bench_profile, seed=SEED, device=accelerator.device.type,
                                   overrides=TINY_OVERRIDES if bench_tiny else ())
    cache = tmp_path / "cache"  # one tokenizer cache: the peer reuses the tokenizer our run trained
    subsets, tokenizer = load_run_data(config, data_dir=data_dir, cache_dir=cache)
    runs: dict = {}
    load_at_start = _load_average()

    def race() -> None:
        runs["ours"] = run_plan(make_plan(config, out_dir=tmp_path / "ours"), data_dir=data_dir, cache_dir=cache,
                                quiet=True)
        runs["peer"] = run_peer(config, train=subsets.train, val=subsets.val, tokenizer=tokenizer,
                                out_dir=tmp_path / "peer", step_budget=step_budget,
                                mixed_precision=device_policy.mixed_precision)

    benchmark.pedantic(race, rounds=1, iterations=1)
    ours, peer = runs["ours"], runs["peer"]
    recorded = ours.data
    assert recorded.fingerprints["train"] == subsets.train.fingerprint(), "peer and ours trained on other rows"
    assert recorded.fingerprints["val"] == subsets.val.fingerprint(), "peer and ours validated on other rows"
    assert recorded.tokenizer_sha256 == tokenizer.sha256, "peer and ours used different tokenizers"

    comparison = compare_time_to_target(ours.time_to_target or [], peer.time_to_target)
    benchmark.extra_info.update(
        cell=CELL, bench_profile=bench_profile, seed=SEED, **comparison,
        ours_steps=ours.final_metrics.steps, ours_stopped_early=ours.final_metrics.stopped_early,
        ours_run_wall_s=ours.final_metrics.wall_s, ours_params=ours.params.total,
        ours_curves=[{"step": p.step, "val_acc": p.val_acc} for p in ours.curves],
        peer="transformers.Trainer + BertForSequenceClassification (from scratch)", peer_steps=peer.steps,
        peer_step_budget=step_budget, tiny_smoke_run=bench_tiny,
        peer_run_wall_s=peer.timing[-1].wall_s if peer.timing else None,
        peer_params=peer.params, peer_attn_implementation=peer.attn_implementation, peer_optim=peer.optim,
        peer_curves=[{"step": p.step, "val_acc": p.val_acc} for p in peer.curves],
        machine={"cpu_name": cpu_name(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                 "torch_num_threads": torch.get_num_threads(), "device": accelerator.device.type,
                 "load_average_at_start": load_at_start, "load_average_at_end": _load_average()})
    bench_summary.extend([f"time to quality, {CELL} {bench_profile} seed {SEED}: ours {ours.final_metrics.steps} "
                          f"steps (early stop: {ours.final_metrics.stopped_early}), peer {peer.steps} steps "
                          f"(budget {step_budget})", *summary_lines(comparison)])
