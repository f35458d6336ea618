"""The matrix as tables and plots: a markdown report, a self-contained HTML page and PNG figures.

    chimera report runs/ci --out report/ [--bench-dir bench/results]

Reads run records (and pytest-benchmark JSON for throughput) only, never live objects; the doctor's
findings for every record are included.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import json
import logging
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chimera.analysis import ablation_effects as ablation
from chimera.analysis import bench_memory
from chimera.analysis.doctor import SEVERITIES, Finding, diagnose, format_evidence
from chimera.analysis.doctor_checks import is_reference, reference_val_acc
from chimera.analysis.report_throughput import bench_load_note, spread_blocks
from chimera.analysis.step_spread import step_spread
from chimera.fileio import atomic_write_text
from chimera.records.record import RunRecord
from chimera.records.store import find_records, load_record

DASH = "—"
TABLE_HEADER = ("cell", "seeds", "params total", "params active", "best step", "stopped early",
                "clean train loss", "val loss", "val acc", "test acc", "linear reference val acc (same rows)",
                "throughput (samples/s)")
log = logging.getLogger("chimera")
Block = tuple  # ("h1"|"h2"|"h3"|"p", text) · ("table", header, rows) · ("img", file, alt) · ("list", items)


@dataclass(frozen=True)
class ReportFiles:
    """What `render_report` wrote."""

    markdown: Path
    html: Path
    images: dict[str, Path] = field(default_factory=dict)  # figure name -> PNG; absent figures are omitted


def bench_throughput(bench_dir: Path, profiles: set[str] | None = None) -> tuple[dict[str, float], list[str]]:
    """Median train-step `extra_info.samples_per_s` per `extra_info.cell` over all pytest-benchmark JSON files
    (the suite's own training step at the records' profiles: `bench_memory.train_step_entries`), and a note
    for each file that could not be read."""
    found: dict[str, list[float]] = {}
    unreadable: list[Path] = []
    for entry in bench_memory.train_step_entries(bench_dir, profiles, unreadable):
        if entry.cell is not None and entry.samples_per_s is not None:
            found.setdefault(entry.cell, []).append(entry.samples_per_s)
    notes = [f"skipped unreadable benchmark file `{path}`" for path in unreadable]
    return {cell: statistics.median(values) for cell, values in found.items()}, notes


def fmt_stat(values: Sequence[float | None], spec: str, std_spec: str = ".2g") -> str:
    """One value, or `mean ± sample std` over seeds; a dash when any seed lacks the number."""
    if not values or any(v is None for v in values):
        return DASH
    if len(set(values)) == 1:
        return format(values[0], spec)
    return f"{format(statistics.mean(values), spec)} ± {format(statistics.stdev(values), std_spec)}"


def seeds_label(records: Sequence[RunRecord]) -> str:
    """How many seeds, then which: `1 (0)`, `5 (0-4)`, `2 (0, 3 (interrupted))`; a bare `0` read as "no seeds"."""
    labels = [seed_label(r) for r in records]
    seeds = [r.seed for r in records]
    contiguous = len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    finished = labels == [str(seed) for seed in seeds]
    inner = f"{seeds[0]}-{seeds[-1]}" if contiguous and finished else ", ".join(labels)
    return f"{len(records)} ({inner})"


def seed_label(record: RunRecord) -> str:
    """The seed, with the status when the run did not finish (its numbers are then partial or missing)."""
    finished = record.status in ("completed", "stopped_early")
    return str(record.seed) if finished else f"{record.seed} ({record.status})"


def reference_acc(records: Sequence[RunRecord], references: Sequence[RunRecord]) -> str:
    """Mean final val acc of the linear reference runs on the same rows as `records` (a dash if none)."""
    reference = reference_val_acc(records[0], list(references)) if records else None
    return DASH if reference is None else fmt_stat([reference[0]], ".4f")


def record_targets(loaded: Sequence[RunRecord]) -> list[tuple[str, float]]:
    """Every (metric, target) timed by any record, in the order the records list them."""
    seen: dict[tuple[str, float], None] = {}
    for record in loaded:
        for entry in record.time_to_target or []:
            seen.setdefault((entry.metric, entry.target), None)
    return list(seen)


def time_to_target_cell(records: Sequence[RunRecord], metric: str, target: float) -> str:
    """`wall s (step)` of the first evaluation reaching the target, mean ± std over the seeds that reached
    it, with `k of n` when some did not; `not reached` when none did; a dash when no record timed it."""
    entries = [r.target_time(metric, target) for r in records]
    if any(e is None for e in entries):
        return DASH
    hits = [e for e in entries if e.reached]
    if not hits:
        return "not reached"
    wall = fmt_stat([e.wall_s for e in hits], ",.1f", ".1f")
    steps = fmt_stat([float(e.step) for e in hits], ".0f", ".0f")
    text = f"{wall} s (step {steps})"
    return text if len(hits) == len(entries) else f"{text}, {len(hits)} of {len(entries)} seeds"


def time_to_target_table(by_cell: dict[str, list[RunRecord]], targets: Sequence[tuple[str, float]]) -> Block:
    header = ("cell", *(f"{metric.replace('_', ' ')} {'≥' if metric == 'val_acc' else '≤'} {target:g}"
                        for metric, target in targets))
    rows = [[cell, *(time_to_target_cell(records, metric, target) for metric, target in targets)]
            for cell, records in by_cell.items()]
    return ("table", header, rows)


def matrix_row(cell: str, records: Sequence[RunRecord], bench: dict[str, float],
               references: Sequence[RunRecord] = ()) -> list[str]:
    metrics = [r.final_metrics for r in records]
    best = [m.best_step for m in metrics]
    stopped = sum(m.stopped_early for m in metrics)
    throughput = f"{bench[cell]:,.0f} (bench)" if cell in bench else run_throughput(records)
    return [
        cell, seeds_label(records),
        fmt_stat([r.params.total for r in records], ",.0f", ",.0f"),
        fmt_stat([r.params.active for r in records], ",.0f", ",.0f"),
        DASH if None in best else ", ".join(str(b) for b in best) if len(set(best)) > 1 else str(best[0]),
        "no" if not stopped else "yes" if stopped == len(metrics) else f"{stopped} of {len(metrics)}",
        *(fmt_stat([getattr(m, key) for m in metrics], ".4g") for key in ("clean_train_loss", "val_loss")),
        *(fmt_stat([getattr(m, key) for m in metrics], ".4f") for key in ("val_acc", "test_acc")),
        reference_acc(records, references),
        throughput,
    ]


def run_throughput(records: Sequence[RunRecord]) -> str:
    """The runs' own training throughput, `(run)`; a disturbed run (analysis.step_spread) is left out of the mean
    and named with its slowest interval, so a paused or loaded machine never passes for a slower cell."""
    spreads = [step_spread(r) for r in records]
    disturbed = [(r, s) for r, s in zip(records, spreads, strict=True) if s and s.disturbed]
    clean = [r for r, s in zip(records, spreads, strict=True) if not (s and s.disturbed)]
    run = fmt_stat([r.final_metrics.train_samples_per_s for r in clean or records], ",.0f", ",.0f")
    if run == DASH or not disturbed:
        return DASH if run == DASH else f"{run} (run)"
    which = ", ".join(f"seed {r.seed} (slowest interval {s.slowest_ratio:.1f}× its median)" for r, s in disturbed)
    return f"{run} (run); disturbed, left out: {which}" if clean else f"{run} (run, all disturbed: {which})"


def _findings_item(finding: Finding) -> list[str]:
    numbers = format_evidence(finding.evidence)
    lines = [f"**{finding.severity.upper()}** `{finding.code}`: {finding.title}"]
    lines += [f"evidence: {numbers}"] if numbers else []
    lines += [f"example: {e}" for e in finding.evidence.get("examples", [])]
    lines += [f"fix: {finding.fix}"] if finding.fix else []
    return lines


def build_blocks(run_dir: Path, loaded: list[tuple[Path, RunRecord]], by_cell: dict[str, list[RunRecord]],
                 bench: dict[str, float], bench_dir: Path, notes: list[str],
                 images: dict[str, Path], ablation_blocks: Sequence[Block] = (),
                 memory: dict | None = None) -> list[Block]:
    profiles = ", ".join(sorted({r.profile for _, r in loaded}))
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    references = [r for _, r in loaded if is_reference(r)]
    blocks: list[Block] = [
        ("h1", "Chimera Bench report"),
        ("p", f"Runs: `{run_dir}`, {len(loaded)} record(s), profile(s) {profiles}. Generated {now}."),
        ("h2", "Matrix"),
        ("table", TABLE_HEADER, [matrix_row(cell, recs, bench, references) for cell, recs in by_cell.items()]),
        ("p", "Losses are clean cross-entropy in nats (eval mode, no label smoothing, no augmentation) of "
              "the final model (the restored best checkpoint when early stopping is on). Several seeds show "
              "mean ± sample standard deviation; best step lists each seed's when they differ. Throughput: "
              f"`(bench)` is the median `samples_per_s` of the pytest-benchmark results under `{bench_dir}`; "
              "`(run)` is the run's own `train_samples_per_s` (training steps only, on the machine that "
              "trained it), over the runs whose throughput was not disturbed (a disturbed one is named; see "
              "Step-time spread per run). The linear reference column is the mean final val acc of the bag-of-n-grams "
              "runs on the same rows (same profile and data settings); a dash where none was run."),
        ("h2", "Time to quality"),
    ]
    targets = record_targets([r for _, r in loaded])
    if targets:
        blocks += [
            time_to_target_table(by_cell, targets),
            ("p", "Wall seconds from the first step to the end of the first evaluation that reached the target, "
                  "evaluations included (MLPerf Training's time to train), on the machine that trained each run; "
                  "the step of that evaluation in brackets. Mean ± sample std over the seeds that reached it."),
            ("img", images["time_to_quality"].name, "Validation accuracy against wall seconds, every cell"),
        ]
    else:
        blocks.append(("p", "No record times a target quality (`evaluation.target_val_acc` in the matrix)."))
    blocks += [
        ("h2", "Curves"),
        ("img", images["loss_curves"].name, "Clean train vs validation loss per cell"),
        ("img", images["accuracy_curves"].name, "Clean train vs validation accuracy per cell"),
        ("h2", "Throughput"),
    ]
    if "throughput" in images:
        blocks.append(("img", images["throughput"].name, "Dense vs MoE throughput"))
    else:
        blocks.append(("p", f"No benchmark results under `{bench_dir}` (no pytest-benchmark entry whose "
                            "`extra_info` has `cell` and `samples_per_s`), so the throughput figure is "
                            "omitted; the table shows each run's own training throughput, marked `(run)`."))
    load = bench_load_note(bench_dir) if bench else None
    blocks += [("p", load)] if load else []
    blocks += spread_blocks(loaded)
    if memory:
        blocks += [("table", bench_memory.HEADER, bench_memory.memory_rows(memory, DASH)),
                   ("p", bench_memory.EXPLANATION)]
    blocks.append(("h2", "Expert utilisation"))
    if "expert_utilisation" in images:
        blocks.append(("img", images["expert_utilisation"].name, "Expert utilisation per MoE layer"))
    else:
        blocks.append(("p", "No MoE routing statistics in these records."))
    blocks += [("p", note) for note in notes]
    blocks += ablation_blocks
    blocks.append(("h2", "Doctor findings"))
    for path, record in loaded:
        findings = diagnose(record, references=references)
        counts = ", ".join(f"{sum(f.severity == s for f in findings)} {s}" for s in SEVERITIES)
        blocks.append(("h3", f"{record.cell} seed {record.seed}: `{path.parent.name}` ({counts})"))
        blocks.append(("list", [_findings_item(f) for f in findings]))
    return blocks


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + block[1])
        elif kind == "p":
            out.append(block[1])
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})")
        elif kind == "table":
            rows = [block[1], ["---"] * len(block[1]), *block[2]]
            out.append("\n".join("| " + " | ".join(row) + " |" for row in rows))
        elif kind == "list":
            out.append("\n".join("- " + "  \n  ".join(item) for item in block[1]))
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


CSS = ("body{font-family:system-ui,sans-serif;max-width:75rem;margin:2rem auto;padding:0 1rem;color:#222}"
       "table{border-collapse:collapse;font-size:.9rem}th,td{border:1px solid #ccc;padding:.3rem .5rem;"
       "text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}"
       "img{max-width:100%;border:1px solid #eee}code{background:#f6f6f6;padding:0 .2rem}li{margin:.4rem 0}")


def to_html(blocks: list[Block], out_dir: Path) -> str:
    body: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3", "p"):
            body.append(f"<{kind}>{_inline(block[1])}</{kind}>")
        elif kind == "img":
            data = base64.b64encode((out_dir / block[1]).read_bytes()).decode("ascii")
            body.append(f'<p><img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}"></p>')
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                           for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "list":
            items = "".join("<li>" + "<br>".join(_inline(line) for line in item) + "</li>"
                            for item in block[1])
            body.append(f"<ul>{items}</ul>")
    head = '<meta charset="utf-8"><title>Chimera Bench report</title>'
    return (f'<!doctype html>\n<html lang="en"><head>{head}<style>{CSS}</style></head><body>\n'
            + "\n".join(body) + "\n</body></html>\n")


def group_by_cell(loaded: list[tuple[Path, RunRecord]]) -> dict[str, list[RunRecord]]:
    """Records per cell in grid order (rows, then columns), seeds ascending."""
    from chimera.analysis import report_figures as figures  # matplotlib: only when a report is made (not for train)

    cells = {r.cell for _, r in loaded}
    rows, cols = figures.grid_of(list(cells))
    ordered = [f"{row}/{col}" for row in rows for col in cols if f"{row}/{col}" in cells]
    return {cell: sorted((r for _, r in loaded if r.cell == cell), key=lambda r: r.seed)
            for cell in ordered}


def render_report(run_dir: Path | str, out_dir: Path | str, *,
                  bench_dir: Path | str = Path("bench/results"), history: Path | None = None) -> ReportFiles:
    """Write report.md, report.html and the PNG figures for every record under `run_dir` (and a History
    section from a `chimera history` store when `history` is given)."""
    from chimera.analysis import report_figures as figures

    run_dir, out_dir, bench_dir = Path(run_dir), Path(out_dir), Path(bench_dir)
    loaded = [(path, load_record(path)) for path in find_records([run_dir])]
    by_cell = group_by_cell(loaded)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = ablation.ablation_tables(by_cell, ablation.metrics_for([r for _, r in loaded]))
    by_cell = {cell: records for cell, records in by_cell.items() if not ablation.is_variant(cell)}  # own section
    bench, notes = bench_throughput(bench_dir, {record.profile for _, record in loaded})
    bench = {cell: value for cell, value in bench.items() if cell in by_cell}
    images = {"loss_curves": figures.loss_curves(by_cell, out_dir / "loss_curves.png"),
              "accuracy_curves": figures.accuracy_curves(by_cell, out_dir / "accuracy_curves.png")}
    targets = [target for metric, target in record_targets([r for _, r in loaded]) if metric == "val_acc"]
    if targets:
        images["time_to_quality"] = figures.time_to_quality(by_cell, targets, out_dir / "time_to_quality.png")
    if bench:
        images["throughput"] = figures.throughput_bars(bench, out_dir / "throughput.png")
    moe_cells = {c: rs for c, rs in by_cell.items() if any(p.moe for r in rs for p in r.curves)}
    if moe_cells:
        path = out_dir / "expert_utilisation.png"
        images["expert_utilisation"] = figures.expert_utilisation(moe_cells, path)
    if tables:
        images["ablation"] = ablation.effects_figure(tables, out_dir / "ablation.png")
        effects = ablation.summary(tables, [r for _, r in loaded])
        atomic_write_text(out_dir / "ablation.json", json.dumps(effects.to_json(), indent=2) + "\n")
    memory = {key: v for key, v in bench_memory.bench_memory(bench_dir, {r.profile for _, r in loaded}).items()
              if key[0] in by_cell}
    blocks = build_blocks(run_dir, loaded, by_cell, bench, bench_dir, notes, images,
                          ablation.report_blocks(tables, images["ablation"].name if tables else None), memory)
    if history is not None:
        from chimera.history.figure import history_blocks  # matplotlib and sqlite3 only when asked for

        section, image = history_blocks(Path(history), out_dir)
        blocks += section
        images.update({"history": image} if image else {})
    markdown, page = out_dir / "report.md", out_dir / "report.html"
    markdown.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(blocks, out_dir), encoding="utf-8")
    return ReportFiles(markdown=markdown, html=page, images=images)


def run_report(args: argparse.Namespace) -> int:
    """`chimera report` (its arguments: chimera/commands.py)."""
    files = render_report(args.run_dir, args.out, bench_dir=args.bench_dir or Path("bench/results"),
                          history=args.history)
    log.info("wrote %s, %s and %d figure(s)", files.markdown, files.html, len(files.images))
    return 0
