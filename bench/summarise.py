"""A pytest-benchmark JSON of this suite as markdown tables: the numbers bench/README.md and README.md report.

    python bench/summarise.py bench/results/cpu/bench.json            # every benchmark (bench/README.md)
    python bench/summarise.py --cells bench/results/cpu/bench.json    # one row per cell (README's speed table)

Every benchmark: median and IQR (ms), samples/s, MFU, peak memory of that benchmark alone (CPU RSS, and
CUDA's or MPS's own figure where it ran there; bench/memory.py), and the figure its goal is about
(speed-up over the BERT peer, data-pipeline rate over the step's consumption, MoE ratios,
time-to-quality ratio at val acc 0.75), then the machine: CPU, threads, torch, load average at start
and end. `--cells`: the train steps only, one row per cell and precision, with the BERT peer's speed-up.
Standard library only, so it runs wherever the JSON is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GOAL_FIELDS = ("speedup_vs_peer", "data_to_step_ratio", "top2_vs_2x_dense", "top2_vs_dense_2ff",
               "mixtral_eager_speedup", "mixtral_grouped_mm_speedup", "ratio_at_0.75")
MEMORY_NOTE = ("Memory: peak RSS of the process while that benchmark ran (its own peak, reset at its start; "
               "in brackets how much it grew over the RSS at its start, i.e. the benchmark's own model, "
               "optimiser state, activations and batches over the interpreter, torch and what the session "
               "keeps); on CUDA and MPS the device's own peak follows (CUDA: max allocated / max reserved; "
               "MPS: driver memory).")


def _fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def session_info(data: dict) -> dict:
    """The session block (load average, calibration); files written before it existed kept it in
    machine_info.chimera (bench/machine.py)."""
    block = data.get("chimera")
    return block if isinstance(block, dict) else (data.get("machine_info") or {}).get("chimera") or {}


def memory_text(extra: dict) -> str:
    """`RSS peak (+growth) MiB`, then the device's own peak; blank when nothing was measured."""
    if "cpu_rss_peak_mib" not in extra:  # files from before per-benchmark memory: the old process-wide figure
        old = extra.get("peak_memory_mib")
        return "" if old is None else f"{old:,.0f} (process high-water mark)"
    text = f"{extra['cpu_rss_peak_mib']:,.0f} (+{extra.get('cpu_rss_growth_mib', 0):,.0f})"
    if "cuda_max_allocated_mib" in extra:
        text += f"; CUDA {extra['cuda_max_allocated_mib']:,.0f} / {extra.get('cuda_max_reserved_mib', 0):,.0f}"
    if "mps_driver_peak_mib" in extra:
        text += f"; MPS {extra['mps_driver_peak_mib']:,.0f}"
    return text


def _header_line(path: Path, data: dict) -> str:
    info = (data.get("machine_info") or {}).get("chimera") or {}
    session = session_info(data)
    return (f"`{path}`: {info.get('cpu_name', '?')}, {info.get('torch_num_threads', '?')} threads, torch "
            f"{info.get('torch', '?')}, profile {info.get('bench_profile', '?')}, load average "
            f"{session.get('load_average_at_start')} → {session.get('load_average_at_end')}")


def summarise(path: Path) -> str:
    data = json.loads(path.read_text(encoding="utf-8"))
    lines = [_header_line(path, data), "",
             "| benchmark | median ms | IQR ms | samples/s | MFU | peak memory MiB | goal figure |",
             "|---|---|---|---|---|---|---|"]
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
                     f"{_fmt(extra.get('samples_per_s'), ',.0f')} | {_fmt(extra.get('mfu'), '.0%')} | "
                     f"{memory_text(extra)} | {goal} |")
    return "\n".join([*lines, "", MEMORY_NOTE])


def summarise_cells(path: Path) -> str:
    """README's table: one row per train-step cell and precision; the peer's speed-up where it ran."""
    data = json.loads(path.read_text(encoding="utf-8"))
    peer = {(e.get("precision"), e.get("cell")): e["speedup_vs_peer"] for b in data["benchmarks"]
            if isinstance((e := b.get("extra_info") or {}).get("speedup_vs_peer"), (int, float))}
    lines = [_header_line(path, data), "",
             "| cell | precision | step | samples/s | MFU | peak memory MiB | vs HF `BertForSequenceClassification` |",
             "|---|---|---|---|---|---|---|"]
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info") or {}
        if bench.get("group") != "train-step" or "cell" not in extra:
            continue
        speedup = peer.get((extra.get("precision"), extra["cell"]))
        lines.append(f"| {extra['cell']} | {extra.get('precision', '')} | {bench['stats']['median'] * 1e3:.0f} ms | "
                     f"{_fmt(extra.get('samples_per_s'), ',.0f')} | {_fmt(extra.get('mfu'), '.0%')} | "
                     f"{memory_text(extra)} | {'' if speedup is None else f'{speedup:.2f}×'} |")
    return "\n".join([*lines, "", MEMORY_NOTE])


if __name__ == "__main__":
    args = sys.argv[1:]
    cells = args[:1] == ["--cells"]
    if len(args) != 1 + cells:
        sys.exit("usage: python bench/summarise.py [--cells] BENCH.json")
    print((summarise_cells if cells else summarise)(Path(args[-1])))
