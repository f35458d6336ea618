"""The speed gate: compare two pytest-benchmark JSON files, machine-normalised, and fail on a regression.

    chimera bench compare bench/results/ci.json bench/baselines/cpu.json [--threshold 0.15] [--markdown FILE]

Each benchmark's median time is divided by the median of the fp32 calibration GEMM of the *same*
file (bench/test_bench_gemm.py), so it is measured in "calibration GEMMs per step". A machine that
is uniformly slower or busier scales both and the ratio stays; a change that makes the step itself
slower moves only the numerator. A benchmark regresses when new_norm / baseline_norm > 1 + threshold;
one present in the baseline but missing from the new file also fails (a skipped check is not a pass).
Like is compared with like: each benchmark's precision (extra_info.precision; older files: fp32) must be
the same in both files, else the comparison is refused (exit 2) rather than read as a speed change.
Exit codes: 0 pass, 1 regression, 2 unreadable or incomparable input. Files are read by
chimera.records.bench_report; like it, this imports only the standard library and chimera.errors/fileio,
so it runs anywhere the JSON files are. `python -m chimera.gates.bench_gate compare ...`, the old spelling,
still runs `chimera bench compare ...` for one release.
"""

from __future__ import annotations

import argparse
import fnmatch
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from chimera.errors import ChimeraError
from chimera.records.bench_report import BenchEntry, BenchReport, load_bench_report

DEFAULT_THRESHOLD = 0.15
DEFAULT_GROUPS = ("train-step",)
CALIBRATION_GROUP = "calibration"


@dataclass(frozen=True)
class Row:
    """One benchmark's verdict. Norms are median step time / median calibration GEMM time."""

    name: str
    baseline_norm: float | None
    new_norm: float | None
    ratio: float | None  # new_norm / baseline_norm; > 1 is slower
    verdict: str  # "ok", "faster", "REGRESSION", "missing" (in the baseline, not in the new file), "new"

    @property
    def failed(self) -> bool:
        return self.verdict in ("REGRESSION", "missing")


@dataclass(frozen=True)
class BenchFile:
    """A pytest-benchmark JSON reduced to what the gate needs."""

    path: Path
    medians: dict[str, float]  # benchmark name -> median seconds (calibration excluded)
    groups: dict[str, str]  # benchmark name -> group
    precisions: dict[str, str]  # benchmark name -> fp32 | bf16 | fp16
    calibration_s: float  # median seconds of the fp32 calibration GEMM
    profile: str | None  # machine_info.chimera.bench_profile
    device: str | None  # machine_info.chimera.device


def load_bench_file(path: Path | str) -> BenchFile:
    """Read a pytest-benchmark JSON; ChimeraError naming the file and the problem when unusable."""
    return bench_file_of(load_bench_report(path))


def bench_file_of(report: BenchReport) -> BenchFile:
    """The gate's view of a read benchmark file; ChimeraError when it cannot be judged (no timing, no calibration)."""
    path = report.path
    medians: dict[str, float] = {}
    groups: dict[str, str] = {}
    precisions: dict[str, str] = {}
    calibration: list[float] = []
    for entry in report.benchmarks:
        median = _median(entry, path)
        if entry.group == CALIBRATION_GROUP and (entry.dtype or "fp32") == "fp32":
            calibration.append(median)
        else:
            medians[entry.name], groups[entry.name] = median, entry.group or ""
            precisions[entry.name] = entry.resolved_precision
    if len(calibration) != 1:
        found = "no" if not calibration else f"{len(calibration)}"
        raise ChimeraError(f"{path}: {found} fp32 calibration GEMM benchmark(s) (group {CALIBRATION_GROUP!r}), "
                           "need exactly one: run bench/test_bench_gemm.py in the same pytest pass")
    return BenchFile(path=path, medians=medians, groups=groups, precisions=precisions, calibration_s=calibration[0],
                     profile=report.machine.profile, device=report.machine.device)


def _median(entry: BenchEntry, path: Path) -> float:
    if entry.median_s is None:
        raise ChimeraError(f"{path}: benchmark {entry.name} without stats.median (was it run with "
                           "--benchmark-disable?)")
    if not entry.median_s > 0:
        raise ChimeraError(f"{path}: {entry.name} has median {entry.median_s}; expected a positive time")
    return entry.median_s


def compare(new_json: Path | str, baseline_json: Path | str, threshold: float = DEFAULT_THRESHOLD,
            groups: tuple[str, ...] | list[str] = DEFAULT_GROUPS) -> list[Row]:
    """One Row per benchmark whose group matches a pattern in `groups`, in the union of both files."""
    if not 0 < threshold < 10:
        raise ChimeraError(f"--threshold {threshold}: expected a fraction such as 0.15 (15%)")
    new, base = load_bench_file(new_json), load_bench_file(baseline_json)
    for what in ("profile", "device"):
        a, b = getattr(new, what), getattr(base, what)
        if a and b and a != b:
            raise ChimeraError(f"{new.path} ran with {what} {a!r} but {base.path} with {b!r}: compare runs of "
                               f"the same {what} (regenerate the baseline, see bench/README.md)")
    group_of = {**base.groups, **new.groups}
    names = [name for name, group in group_of.items() if any(fnmatch.fnmatchcase(group, g) for g in groups)]
    if not names:
        raise ChimeraError(f"{baseline_json}, {new_json}: no benchmark in group(s) {', '.join(groups)}")
    for name in names:
        a, b = new.precisions.get(name), base.precisions.get(name)
        if a and b and a != b:
            raise ChimeraError(f"{name} ran in {a} in {new.path} but in {b} in {base.path}: the gate compares a "
                               "precision only with itself (regenerate the baseline in that precision)")
    return [judge(name, base, new, threshold) for name in sorted(names)]


def judge(name: str, base: BenchFile, new: BenchFile, threshold: float) -> Row:
    """The gate's verdict on one benchmark (also how `chimera history` flags a commit)."""
    base_norm = base.medians[name] / base.calibration_s if name in base.medians else None
    new_norm = new.medians[name] / new.calibration_s if name in new.medians else None
    if base_norm is None:
        return Row(name, None, new_norm, None, "new")
    if new_norm is None:
        return Row(name, base_norm, None, None, "missing")
    ratio = new_norm / base_norm
    verdict = "REGRESSION" if ratio > 1 + threshold else "faster" if ratio < 1 - threshold else "ok"
    return Row(name, base_norm, new_norm, ratio, verdict)


def format_table(rows: list[Row], *, threshold: float = DEFAULT_THRESHOLD) -> str:
    """Plain-text table: benchmark, baseline norm, new norm, ratio, verdict, then a one-line summary."""
    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    width = max([len("benchmark"), *(len(r.name) for r in rows)])
    lines = [f"{'benchmark':<{width}}  {'baseline norm':>13}  {'new norm':>9}  {'ratio':>6}  verdict"]
    lines += [f"{r.name:<{width}}  {num(r.baseline_norm, '13.3f')}  {num(r.new_norm, '9.3f')}  "
              f"{num(r.ratio, '6.3f')}  {r.verdict}" for r in rows]
    failed = sum(r.failed for r in rows)
    lines.append(f"norm = median step time / median fp32 calibration GEMM time of the same file; "
                 f"threshold +{threshold:.0%}: {len(rows) - failed} passed, {failed} failed")
    return "\n".join(lines)


def format_markdown(rows: list[Row], *, threshold: float = DEFAULT_THRESHOLD, title: str = "Speed gate") -> str:
    """The same table in GitHub-flavoured markdown (a CI job summary), verdicts that fail in bold."""
    def num(value: float | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    failed = sum(r.failed for r in rows)
    lines = [f"### {title}: {'FAILED' if failed else 'passed'}", "",
             "| benchmark | baseline norm | new norm | ratio | verdict |", "|---|---:|---:|---:|---|"]
    lines += [f"| `{r.name}` | {num(r.baseline_norm, '.3f')} | {num(r.new_norm, '.3f')} | {num(r.ratio, '.3f')} | "
              f"{f'**{r.verdict}**' if r.failed else r.verdict} |" for r in rows]
    lines += ["", f"norm = median step time / median fp32 calibration GEMM time of the same file; threshold "
                  f"+{threshold:.0%}: {len(rows) - failed} passed, {failed} failed", ""]
    return "\n".join(lines)


def run_compare(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`chimera bench compare`: print the table; 1 when a benchmark regressed or went missing (ChimeraError: 2)."""
    rows = compare(args.new, args.baseline, threshold=args.threshold, groups=tuple(args.groups or DEFAULT_GROUPS))
    (out or sys.stdout).write(format_table(rows, threshold=args.threshold) + "\n")
    if getattr(args, "markdown", None):
        try:
            with open(args.markdown, "a", encoding="utf-8") as summary:
                summary.write(format_markdown(rows, threshold=args.threshold, title=f"Speed gate: {args.new}"))
        except OSError as exc:
            raise ChimeraError(f"{args.markdown}: cannot append the markdown table ({exc.strerror})") from None
    return 1 if any(r.failed for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    """The old spelling, `python -m chimera.gates.bench_gate ARGS`: runs `chimera bench ARGS` (goes next release)."""
    print("chimera: `python -m chimera.gates.bench_gate` is now `chimera bench`; the old name goes in the next "
          "release", file=sys.stderr)
    args = sys.argv[1:] if argv is None else argv
    return subprocess.run([sys.executable, "-m", "chimera", "bench", *args], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
