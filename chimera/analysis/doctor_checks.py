"""The doctor's checks: each a pure function of a run record (and thresholds) returning findings.

One function per symptom of the troubleshooting guide; `chimera.analysis.doctor.diagnose` runs them all.
Reads records only; the leakage check alone re-derives the run's data subsets (`chimera.analysis.leakage_scan`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from chimera.ablation import LEAVE_OUT
from chimera.analysis.leakage_scan import rescan
from chimera.config import same_rows
from chimera.records.ablation_summary import EffectSummary, load_ablation_summary
from chimera.records.record import RunRecord
from chimera.records.time_to_target import DIRECTIONS

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """One diagnosis: `evidence` holds the numbers it rests on (plus a few example texts for leakage)."""

    code: str
    severity: Severity
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = ""


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """Where a number becomes a finding. Losses are clean cross-entropy in nats."""

    memorised_clean_train_loss: float = 0.1  # clean train loss below this = the training set is memorised
    val_rise_margin: float = 0.1  # rise of the last val loss above its minimum (nats) confirming overfitting
    leakage_val_loss: float = 0.01  # val loss below this is implausible for AG News: leakage or wrong split
    near_duplicate_jaccard: float = 0.8  # Jaccard similarity of word 3-gram sets for a near-duplicate pair
    onset_min_change: float = 0.02  # val rise and train fall after the val minimum marking an onset
    overfit_gap_warning: float = 0.5  # final val - clean train loss that, while widening, is a warning
    # A heuristic read off this suite, not a law: baseline/dense (1,543 non-embedding parameters per
    # training row in the full profile, 6,173 in ci) memorises AG News (its lowest clean train loss is below
    # 0.002 in every record under docs/results/), fixed/dense (194 full, 97 ci on 4,096 rows) does not (above
    # 0.09 full, 0.26 ci); shapes and row counts are matrix.toml's. Classical "10 samples per parameter" rules are far
    # stricter and routinely broken by nets that generalise; Zhang et al. 2017 showed such nets can
    # fit random labels, so capacity alone decides nothing and this is only ever a warning.
    max_params_per_sample: float = 1000.0  # non-embedding parameters per training row
    grad_spike_factor: float = 10.0  # grad norm above this multiple of the run's median
    unk_rate: float = 0.05  # share of [UNK] tokens in a split
    truncation_rate: float = 0.5  # share of examples cut at data.max_length
    moe_collapse_share: float = 0.9  # share of tokens one expert receives (top_k x its share of routed slots)
    moe_drop_rate: float = 0.1  # share of routed slots dropped by the capacity limit


def check_memorisation(record: RunRecord, t: Thresholds) -> list[Finding]:
    train, val = record.curve("clean_train_loss"), record.curve("val_loss")
    if not train or not val:
        return []
    min_train = min(v for _, v in train)
    if min_train >= t.memorised_clean_train_loss:
        return []
    best_step, val_min = min(val, key=lambda p: p[1])
    rise = val[-1][1] - val_min
    evidence = {"min_clean_train_loss": min_train, "final_clean_train_loss": train[-1][1],
                "threshold": t.memorised_clean_train_loss, "val_loss_min": val_min, "val_loss_min_step": best_step,
                "val_loss_last": val[-1][1], "val_rise": rise, "val_rise_margin": t.val_rise_margin}
    fix = ("regularise and stop early: smaller model, dropout 0.3-0.5, weight decay ~0.1, label smoothing, "
           "augmentation, early stopping on val loss (see the fixed/* cells)")
    if rise > t.val_rise_margin:
        return [Finding("memorisation", "error",
                        f"memorised the training set: clean train loss {min_train:.4g} while val loss rose "
                        f"{rise:.3g} above its minimum", evidence, fix)]
    return [Finding("possible_memorisation", "warning",
                    f"clean train loss {min_train:.4g} is below {t.memorised_clean_train_loss} but val loss has "
                    "not risen (yet): a flat val loss does not rule out memorisation", evidence, fix)]


def check_leakage(record: RunRecord, t: Thresholds, *, data_dir: Path | str | None = None,
                  subsets: Any = None) -> list[Finding]:
    val = record.curve("val_loss")
    values = [v for _, v in val] + [record.final_metrics.val_loss]
    values = [v for v in values if v is not None]
    if not values or min(values) >= t.leakage_val_loss:
        return []
    evidence = {"min_val_loss": min(values), "threshold": t.leakage_val_loss,
                **{f"recorded_{k}": v for k, v in record.data.leakage.items()},
                **rescan(record, data_dir=data_dir, subsets=subsets, jaccard=t.near_duplicate_jaccard)}
    return [Finding("suspect_leakage", "error",
                    f"suspect leakage or evaluation on training data: val loss {min(values):.3g} (a val loss "
                    "near 0 is not overfitting; overfitting makes val loss rise)", evidence,
                    "check that validation rows come from a split disjoint from training (counts below), "
                    "that the evaluation loader reads the val subset, and deduplicate normalised texts "
                    "across splits")]


def check_overfitting(record: RunRecord, t: Thresholds) -> list[Finding]:
    train = dict(record.curve("clean_train_loss"))
    val = [(s, v) for s, v in record.curve("val_loss") if s in train]
    if len(val) < 3:
        return [Finding("overfitting", "info", f"only {len(val)} evaluations: too few to find an overfitting "
                        "onset", {"evaluations": len(val)}, "evaluate more often (train.eval_every)")]
    steps = np.array([s for s, _ in val], dtype=float)
    gap = np.array([v - train[s] for s, v in val])
    best = int(np.argmin([v for _, v in val]))
    best_step = val[best][0]
    tail = max(2, math.ceil(len(val) / 3))
    slope = float(np.polyfit(steps[-tail:], gap[-tail:], 1)[0]) * 1000 if np.ptp(steps[-tail:]) else 0.0
    val_rise, train_fall = val[-1][1] - val[best][1], train[best_step] - train[val[-1][0]]
    evidence = {"val_loss_min_step": best_step, "val_loss_min": val[best][1], "last_step": val[-1][0],
                "val_rise_after_min": val_rise, "train_fall_after_min": train_fall,
                "gap_at_min": float(gap[best]), "gap_last": float(gap[-1]),
                "gap_slope_per_1k_steps": slope, "slope_window_evaluations": tail}
    if val_rise <= t.onset_min_change or train_fall <= t.onset_min_change:
        return [Finding("overfitting", "info", "no clear overfitting onset: after the val-loss minimum at "
                        f"step {best_step} val loss rose {val_rise:.2g} and clean train loss fell "
                        f"{train_fall:.2g} nats (an onset needs both > {t.onset_min_change})", evidence, "")]
    severity: Severity = "warning" if gap[-1] > t.overfit_gap_warning and slope > 0 else "info"
    trend = "widening" if slope > 0 else "steady or narrowing"
    return [Finding("overfitting", severity,
                    f"overfitting from step {best_step}: val loss bottoms out while clean train loss keeps "
                    f"falling; final gap {gap[-1]:.3g} nats, {trend}", evidence,
                    "stop at the val-loss minimum (train.early_stopping) and regularise harder")]


def check_capacity(record: RunRecord, t: Thresholds) -> list[Finding]:
    params, rows = record.params, record.data.sizes["train"]
    if not params.total or not rows:
        return []
    per_total, per_non_emb = params.total / rows, params.non_embedding / rows
    evidence = {"params_total": params.total, "params_non_embedding": params.non_embedding,
                "params_active": params.active, "train_samples": rows,
                "params_per_sample": per_total, "non_embedding_params_per_sample": per_non_emb,
                "recommended_max_non_embedding_per_sample": t.max_params_per_sample}
    note = "(a heuristic read off this suite's cells, not a law)"
    if per_non_emb > t.max_params_per_sample:
        return [Finding("capacity", "warning", f"{per_non_emb:,.0f} non-embedding parameters per training "
                        f"sample, above the recommended <= {t.max_params_per_sample:,.0f} {note}", evidence,
                        "use a smaller model (fewer layers, narrower d_model/d_ff), more training data, or "
                        "strong regularisation with early stopping")]
    return [Finding("capacity", "info", f"{per_non_emb:,.0f} non-embedding parameters per training sample, "
                    f"within the recommended <= {t.max_params_per_sample:,.0f} {note}", evidence, "")]


# The fix's measured ablation (`make ablation` publishes the report's ablation.json here) and which of its
# changes each regulariser of the audit is.
ABLATION_SUMMARY = Path(__file__).with_name("ablation-ci.json")
REGULARISER_CHANGES = {"dropout": "dropout", "weight_decay": "weight-decay", "label_smoothing": "label-smoothing",
                       "augmentation": "augmentation", "early_stopping": "schedule"}


@functools.cache
def measured_regularisers(path: Path = ABLATION_SUMMARY) -> str | None:
    """What this suite's own ablation measured for each regulariser: the fixed setup's test accuracy and
    generalisation gap (val - clean train loss) with it minus without it (leave one out, mean over seeds,
    `≈` within seed noise by a paired t-test at 5%); None when none is published. A published file that is
    malformed is a ChimeraError naming it (chimera/records/ablation_summary.py)."""
    if not path.exists():
        return None
    table = load_ablation_summary(path).table(LEAVE_OUT)
    if table is None:
        return None

    def said(effect: EffectSummary) -> str:
        return f"{effect.mean:+.3f}{' ≈' if effect.within_noise else ''}"

    parts = [f"{name}: test acc {said(e['test_acc'])}, gap {said(e['gap'])}"
             for name, change in REGULARISER_CHANGES.items()
             if (e := table.effects.get(change)) and "test_acc" in e and "gap" in e
             and e["test_acc"].mean is not None and e["gap"].mean is not None]
    return (f"with minus without each, {table.start} leave one out, {len(table.seeds)} seeds ({path.name}): "
            f"{'; '.join(parts)}") if parts else None


def check_regularisation(record: RunRecord, t: Thresholds) -> list[Finding]:
    model, train = record.config.model, record.config.train
    evidence = {"dropout": model.dropout, "weight_decay": train.weight_decay,
                "label_smoothing": train.label_smoothing, "augmentation": record.config.augment.enabled,
                "early_stopping": train.early_stopping, "eval_every": train.eval_every,
                "evaluations": len(record.curves)}
    on = [name for name in ("dropout", "weight_decay", "label_smoothing", "augmentation", "early_stopping")
          if evidence[name]]
    measured = measured_regularisers()
    if measured:
        evidence["ablation"] = measured
    clean_losses = [v for _, v in record.curve("clean_train_loss")]
    memorised = bool(clean_losses) and min(clean_losses) < t.memorised_clean_train_loss
    if not on and memorised:
        return [Finding("regularisation", "warning", "no regulariser is on and the training set is memorised",
                        evidence, "turn on dropout, weight decay, label smoothing, augmentation and "
                        "early stopping" + ("; the ablation evidence says which carried this suite's fix"
                                            if measured else ""))]
    return [Finding("regularisation", "info", f"regularisers on: {', '.join(on) or 'none'}", evidence, "")]


def check_status(record: RunRecord) -> list[Finding]:
    status, metrics = record.status, record.final_metrics
    evidence = {"steps": metrics.steps, "error": record.error}
    if status == "failed":
        return [Finding("run_failed", "error", f"the run failed at step {metrics.steps}: its final "
                        "metrics are missing or partial", evidence,
                        "read the record's error, fix the cause and rerun the cell")]
    if status == "interrupted":
        command = (record.resume.command if record.resume else None) or "--resume RUN_DIR"
        rerun = f"chimera train --cell {record.cell} --profile {record.profile} --seed {record.seed}"
        return [Finding("run_interrupted", "warning", f"the run was interrupted at step {metrics.steps}",
                        evidence, f"continue it: {rerun} {command} (plus the run's --set options)")]
    return []


def check_non_finite(record: RunRecord) -> list[Finding]:
    events = [e for e in record.events if e.kind == "non_finite"]
    error = record.error or ""
    failed = record.status == "failed" and any(w in error.lower() for w in ("non-finite", "nan", "inf"))
    null_steps = [p.step for p in record.curves  # a measured loss that is null was not finite
                  if p.train_loss is None or p.val_loss is None or (p.clean_train and p.clean_train.loss is None)]
    if not (events or failed or null_steps):
        return []
    steps = [e.step for e in events] + null_steps
    evidence = {"non_finite_events": len(events), "failed_non_finite": failed,
                "evaluations_with_missing_loss": len(null_steps), "first_step": min(steps) if steps else None}
    return [Finding("non_finite", "error", "non-finite loss or gradient (NaN/inf)", evidence,
                    "lower train.lr or add warmup, keep grad clipping on, use fp32/bf16 instead of fp16, "
                    "and check the input for empty or corrupt rows")]


def check_grad_spikes(record: RunRecord, t: Thresholds) -> list[Finding]:
    # grad_norm is the norm of the last step before each evaluation: a sample of the run, not every step
    points = record.curve("grad_norm")
    if len(points) < 5:
        return []
    median = float(np.median([v for _, v in points]))
    spikes = [(s, v) for s, v in points if median > 0 and v > t.grad_spike_factor * median]
    if not spikes:
        return []
    evidence = {"spikes": len(spikes), "first_spike_step": spikes[0][0],
                "max_grad_norm": max(v for _, v in spikes), "median_grad_norm": median,
                "factor": t.grad_spike_factor}
    return [Finding("grad_spike", "warning", f"{len(spikes)} grad-norm spikes above "
                    f"{t.grad_spike_factor:g}x the run's median", evidence,
                    "lower train.lr, lengthen warmup or tighten train.grad_clip")]


def check_lr_schedule(record: RunRecord) -> list[Finding]:
    train = record.config.train
    points = record.curve("lr")
    if not points:
        return []
    peak, schedule, warmup = train.lr, train.schedule, train.warmup_steps
    problems = []
    zero_early = [s for s, v in points if v == 0 and s < train.max_steps]
    if zero_early:
        problems.append(f"lr is 0 at step {zero_early[0]}, before the end")
    if max(v for _, v in points) > peak * (1 + 1e-6):
        problems.append(f"lr exceeds the configured peak {peak:g}")
    in_warmup = [v for s, v in points if s < warmup]
    if in_warmup and max(in_warmup) >= peak * (1 - 1e-6):
        problems.append(f"lr reaches the peak inside the {warmup}-step warmup")
    after = [v for s, v in points if s >= warmup]
    if schedule == "constant" and any(not math.isclose(v, peak, rel_tol=1e-6) for v in after):
        problems.append("lr changes under a constant schedule")
    evidence = {"peak_lr": peak, "warmup_steps": warmup, "warmup_checked": bool(in_warmup),
                "first_lr": points[0][1], "final_lr": points[-1][1], "final_step": points[-1][0]}
    if problems:
        return [Finding("lr_schedule", "warning", f"{schedule} schedule: " + "; ".join(problems), evidence,
                        "check train.schedule, train.warmup_steps and max_steps against the scheduler")]
    return [Finding("lr_schedule", "info", f"{schedule} schedule with {warmup} warmup steps behaves as "
                    "configured", evidence, "")]


def check_tokenisation(record: RunRecord, t: Thresholds) -> list[Finding]:
    stats = record.data.token_stats
    if not stats:
        return []
    evidence: dict[str, Any] = {}
    high = []
    for split, rates in stats.items():
        evidence.update({f"{split}_unk_rate": rates.unk_rate, f"{split}_truncation_rate": rates.truncation_rate})
        high += [f"{split} unk {rates.unk_rate:.1%}"] if rates.unk_rate > t.unk_rate else []
        high += [f"{split} truncation {rates.truncation_rate:.1%}"] if rates.truncation_rate > t.truncation_rate else []
    evidence.update(unk_threshold=t.unk_rate, truncation_threshold=t.truncation_rate)
    if high:
        return [Finding("tokenisation", "warning", "tokenisation loses text: " + ", ".join(high), evidence,
                        "raise data.vocab_size (unknown tokens) or data.max_length (truncation)")]
    return [Finding("tokenisation", "info", "unknown-token and truncation rates within thresholds",
                    evidence, "")]


def check_moe(record: RunRecord, t: Thresholds) -> list[Finding]:
    top_k = record.config.model.top_k
    collapsed, dropping, last = [], [], {}
    for point in record.curves:
        for layer in point.moe or []:
            shares = np.asarray(layer.tokens_per_expert, dtype=float)
            if not shares.size or shares.sum() <= 0:
                continue
            token_share = top_k * shares / shares.sum()  # share of tokens reaching each expert
            entry = {"step": point.step, "layer": layer.layer, "expert": int(token_share.argmax()),
                     "max_token_share": float(token_share.max()),
                     "dropped_fraction": layer.dropped_fraction, "router_entropy": layer.router_entropy}
            last[layer.layer] = entry
            collapsed += [entry] if entry["max_token_share"] > t.moe_collapse_share else []
            dropping += [entry] if layer.dropped_fraction > t.moe_drop_rate else []
    if not last:
        return []
    findings = []
    if collapsed:
        worst = max(collapsed, key=lambda e: e["max_token_share"])
        evidence = {"collapsed_evaluations": len(collapsed), "first_step": collapsed[0]["step"], **worst,
                    "threshold": t.moe_collapse_share}
        title = (f"routing collapsed: expert {worst['expert']} of layer {worst['layer']} gets "
                 f"{worst['max_token_share']:.0%} of tokens at step {worst['step']}")
        findings.append(Finding("moe_collapse", "warning", title, evidence, "raise model.aux_loss_coef (load "
                                "balancing), add router z-loss or jitter, lower train.lr"))
    if dropping:
        worst = max(dropping, key=lambda e: e["dropped_fraction"])
        evidence = {"dropping_evaluations": len(dropping), **worst, "threshold": t.moe_drop_rate}
        findings.append(Finding("moe_drops", "warning", f"{worst['dropped_fraction']:.0%} of routed slots "
                                f"dropped in layer {worst['layer']} at step {worst['step']}", evidence,
                                "raise model.capacity_factor_train/eval or set them to None (dropless)"))
    if not findings:
        shares = {f"layer{n}_max_token_share": e["max_token_share"] for n, e in sorted(last.items())}
        findings.append(Finding("moe_routing", "info", "routing balanced at the last evaluation", shares, ""))
    return findings


def check_time_to_target(record: RunRecord) -> list[Finding]:
    """A finished run that never reached its easiest target quality has no time to quality at all."""
    entries = record.time_to_target or []
    if record.status not in ("completed", "stopped_early"):
        return []
    findings = []
    for metric in DIRECTIONS:
        timed = [e for e in entries if e.metric == metric]
        if not timed:
            continue
        easiest = min(timed, key=lambda e: e.target if DIRECTIONS[metric] == "max" else -e.target)
        if easiest.reached:
            continue
        values = [v for _, v in record.curve(metric)]
        best = (max(values) if DIRECTIONS[metric] == "max" else min(values)) if values else None
        evidence = {"metric": metric, "lowest_target": easiest.target, "best_value": best,
                    "steps": record.final_metrics.steps, "evaluations": len(record.curves)}
        findings.append(Finding(
            "target_not_reached", "warning",
            f"never reached the lowest target {metric} {easiest.target:g} "
            f"(best {'none' if best is None else format(best, '.4g')}): no time to quality",
            evidence, "train longer (train.max_steps, or more patience), revisit lr and regularisation, or set "
                      "evaluation targets this setup can reach"))
    return findings


def is_reference(record: RunRecord) -> bool:
    """A record of the linear reference model (the model family, not the cell's name, decides)."""
    return record.config.model.arch == "bag_of_ngrams"


def comparable_references(record: RunRecord, references: list[RunRecord]) -> list[RunRecord]:
    """Finished reference runs on the same rows: same profile and the same resolved data section."""
    return [r for r in references if is_reference(r) and r.status in ("completed", "stopped_early")
            and r.profile == record.profile and same_rows(r.config.data, record.config.data)
            and r.final_metrics.val_acc is not None]


def reference_val_acc(record: RunRecord, references: list[RunRecord]) -> tuple[float, list[RunRecord]] | None:
    """Mean final val acc of the reference runs on `record`'s rows, and those runs; None if there are none."""
    matching = comparable_references(record, references)
    if is_reference(record) or not matching:
        return None
    return float(np.mean([r.final_metrics.val_acc for r in matching])), matching


def check_below_reference(record: RunRecord, references: list[RunRecord]) -> list[Finding]:
    """A transformer that ends below a linear bag of n-grams on the same rows has learnt less than word counts."""
    val_acc = record.final_metrics.val_acc
    reference = reference_val_acc(record, references)
    if val_acc is None or reference is None or val_acc >= reference[0]:
        return []
    reference_acc, matching = reference
    evidence = {"val_acc": val_acc, "reference_val_acc": reference_acc, "reference_runs": len(matching),
                "reference_cell": matching[0].cell}
    return [Finding("below_reference", "warning",
                    f"a linear model on the same rows does better: val acc {val_acc:.4f} vs {reference_acc:.4f} "
                    f"for {matching[0].cell} (mean of {len(matching)} run(s))", evidence,
                    "the transformer is not earning its cost here: check its regularisation, learning rate and "
                    "training length against the reference before trusting its other numbers")]
