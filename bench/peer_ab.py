"""Our dense train step against the BERT peer, interleaved: one step of each in turn, N pairs.

    python -m bench.peer_ab fixed/dense --pairs 40 [--profile full]      # from the repository root

pytest-benchmark times the two benchmarks one after the other, so a drift of the machine between
them (other load, a process landing in a slower memory layout) shows up in `speedup_vs_peer`.
Alternating the two steps exposes both to the same moments: the median of the per-pair ratios
(BERT time / ours) is the figure to trust, the ratio of the minima a second opinion. Same objects as
the benchmarks: `bench.harness.StepBench` for ours, `bench.test_bench_peer.peer_step` for BERT,
one Accelerator built like the trainer's. Prints one line; nothing is written.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench.harness import StepBench
from bench.test_bench_peer import DENSE_CELLS, peer_step
from chimera.matrix import load_matrix
from chimera.train.device import choose_policy, configure_process, probe_device
from chimera.train.run import build_accelerator


def interleaved(ours, peer, pairs: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    for _ in range(warmup):
        ours()
        peer()
    ours_s, peer_s = [], []
    for _ in range(pairs):
        for fn, times in ((ours, ours_s), (peer, peer_s)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return ours_s, peer_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", choices=DENSE_CELLS)
    parser.add_argument("--pairs", type=int, default=30, help="timed pairs after 3 warm-up pairs (default 30)")
    parser.add_argument("--profile", default="full", help="matrix profile whose shapes are used (default full)")
    args = parser.parse_args()
    policy = choose_policy(probe_device(os.environ.get("CHIMERA_DEVICE", "auto") or "auto"))
    configure_process(policy)
    accelerator = build_accelerator(policy)
    config = load_matrix().resolve(args.cell, args.profile, device=accelerator.device.type)
    ours = StepBench.for_config(config, policy, accelerator)
    _, peer = peer_step(config, policy, accelerator)
    ours_s, peer_s = interleaved(ours.step, peer, args.pairs)
    ratios = [p / o for o, p in zip(ours_s, peer_s, strict=True)]
    print(f"{args.cell} ({args.profile}, {accelerator.device.type}, {args.pairs} pairs): ours median "
          f"{statistics.median(ours_s) * 1e3:.1f} ms (min {min(ours_s) * 1e3:.1f}), BERT median "
          f"{statistics.median(peer_s) * 1e3:.1f} ms (min {min(peer_s) * 1e3:.1f}); speed-up: median pairwise "
          f"{statistics.median(ratios):.3f}, ratio of minima {min(peer_s) / min(ours_s):.3f}")


if __name__ == "__main__":
    main()
