"""A pytest-benchmark JSON of this suite as one markdown table: the numbers bench/README.md reports.

    python bench/summarise.py bench/results/cpu/bench.json

One row per benchmark: median and IQR (ms), samples/s, MFU, and the figure its goal is about
(speed-up over the BERT peer, data-pipeline rate over the step's consumption, MoE ratios, time-to-quality
ratio at val acc 0.75), then the machine: CPU, threads, torch, load average at start and end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GOAL_FIELDS = ("speedup_vs_peer", "data_to_step_ratio", "top2_vs_2x_dense", "top2_vs_dense_2ff",
               "mixtral_eager_speedup", "mixtral_grouped_mm_speedup", "ratio_at_0.75")


def _fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def summarise(path: Path) -> str:
    data = json.loads(path.read_text(encoding="utf-8"))
    info = (data.get("machine_info") or {}).get("chimera") or {}
    lines = [f"`{path}`: {info.get('cpu_name', '?')}, {info.get('torch_num_threads', '?')} threads, torch "
             f"{info.get('torch', '?')}, profile {info.get('bench_profile', '?')}, load average "
             f"{info.get('load_average_at_start')} → {info.get('load_average_at_end')}", "",
             "| benchmark | median ms | IQR ms | samples/s | MFU | goal figure |", "|---|---|---|---|---|---|"]
    shown: dict[str, float] = {}  # the MoE cases carry the ratios known so far: print each once
    for bench in data["benchmarks"]:
        stats, extra = bench["stats"], bench.get("extra_info") or {}
        fresh = {k: extra[k] for k in GOAL_FIELDS if isinstance(extra.get(k), (int, float))
                 and not (k.startswith(("top2", "mixtral")) and shown.get(k) == extra[k])}
        shown.update(fresh)
        goal = ", ".join(f"{k} {v:.2f}" for k, v in fresh.items())
        if "gflop_per_s" in extra:
            goal = f"{extra['gflop_per_s']:.0f} GFLOP/s" + (f", {goal}" if goal else "")
        lines.append(f"| {bench['name']} | {stats['median'] * 1e3:.1f} | {_fmt(stats.get('iqr', 0) * 1e3, '.1f')} | "
                     f"{_fmt(extra.get('samples_per_s'), ',.0f')} | {_fmt(extra.get('mfu'), '.0%')} | {goal} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/summarise.py BENCH.json")
    print(summarise(Path(sys.argv[1])))
