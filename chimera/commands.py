"""THE command table: every `chimera` command, its arguments (with the kind of each path) and its handler.

chimera/cli.py builds the parser (--help) from it, checks the declared paths before any work, calls the
handler and maps errors to exit codes; scripts/readme_smoke.py checks the README's commands against it.
A handler is named as "module:function" and imported only when its command runs, so `chimera train`
never loads the report stack and `--help` loads no handler at all. This module imports no other chimera
module but chimera.fileio, so reading the table costs nothing.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from chimera.fileio import EXISTING_WRITE_DIR, READ_ANY, READ_DIR, READ_FILE, WRITE_DIR, WRITE_FILE, PathKind

DATA_ENV, DEVICE_ENV, HISTORY_ENV = "CHIMERA_DATA_DIR", "CHIMERA_DEVICE", "CHIMERA_HISTORY"
DEVICES = ("auto", "cpu", "cuda", "mps")
# The libraries' own defaults, stated here so that parsing imports none of them (a test checks they agree).
SPEED_THRESHOLD, MIN_SEEDS, HISTORY_STORE, BANDS_DIR = 0.15, 5, "results/history.sqlite", "bands"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # a field argparse is not given (None is a value: `default=None` differs from no default)


@dataclass(frozen=True, kw_only=True)
class Argument:
    """One argument: what argparse.add_argument takes, plus, for a path, what it must be."""

    flags: tuple[str, ...]  # ("--out",), or ("record",) for a positional
    help: str = UNSET
    type: Callable[[str], Any] = UNSET
    default: Any = UNSET
    default_from: Callable[[], Any] | None = None  # called when the parser is built: a default from the environment
    nargs: str | int = UNSET
    action: str = UNSET
    choices: tuple[str, ...] = UNSET
    metavar: str = UNSET
    dest: str = UNSET
    required: bool = UNSET
    path: PathKind | None = None  # checked before the handler runs (chimera.fileio.check_path)
    role: str = ""  # what the path is for, in its one-line error

    def __post_init__(self) -> None:
        if self.path is not None and not self.role:
            raise ValueError(f"{self.flags[0]}: a path argument needs its role for the error message")

    @property
    def positional(self) -> bool:
        return not self.flags[0].startswith("-")

    @property
    def name(self) -> str:
        """The attribute on the parsed namespace."""
        if self.dest is not UNSET:
            return self.dest
        return self.flags[0] if self.positional else self.flags[0].lstrip("-").replace("-", "_")

    @property
    def shown(self) -> str:
        """The argument as a user sees it: the flag, or a positional's metavar."""
        return self.metavar if self.positional and self.metavar is not UNSET else self.flags[0]

    def kwargs(self) -> dict[str, Any]:
        """What argparse.add_argument gets besides the flags."""
        given = {f.name: getattr(self, f.name) for f in fields(self)
                 if f.name not in {"flags", "default_from", "path", "role"} and getattr(self, f.name) is not UNSET}
        if self.default_from is not None:
            given["default"] = self.default_from()
        return given


@dataclass(frozen=True, kw_only=True)
class Command:
    """A command (`chimera NAME ...`) with its handler, or a group of subcommands (`chimera NAME SUB ...`)."""

    name: str
    help: str  # one line, listed by `chimera --help`
    description: str = ""  # the top of `chimera NAME --help`
    arguments: tuple[Argument, ...] = ()
    handler: str = ""  # "module:function(args: argparse.Namespace) -> int", imported when the command runs
    subcommands: tuple[Command, ...] = ()
    default: str = ""  # the subcommand run when none is named; its options are accepted before it too

    def __post_init__(self) -> None:
        if bool(self.handler) == bool(self.subcommands):
            raise ValueError(f"{self.name}: a command has a handler or subcommands, not both or neither")


def _device_name(value: str) -> str:
    if value not in DEVICES:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(DEVICES)} (from --device or "
                                         f"${DEVICE_ENV})")
    return value


def _tolerance(value: str) -> float:
    try:
        tolerance = float(value)
    except ValueError:
        tolerance = -1.0
    if not 0.0 <= tolerance < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number >= 0 (a relative tolerance, e.g. 0.01)")
    return tolerance


# Options of both run commands, train and matrix.
RUN_OPTIONS = (
    Argument(flags=("--profile",), default="ci", help="profile from the matrix file: ci (minutes on a CPU) or "
             "full (the original setup); default: %(default)s"),
    Argument(flags=("--data-dir",), path=READ_DIR, role="AG News train and test files",
             help=f"local AG News folder (hub schema or original CSV layout); default: ${DATA_ENV}, else download "
             "from the Hugging Face hub"),
    Argument(flags=("--out",), default="runs", type=Path, path=WRITE_DIR, role="run folders go here",
             help="folder for run folders; default: %(default)s"),
    Argument(flags=("--seed",), type=int, default=0, help="seed for data subsets, init, order, augmentation"),
    Argument(flags=("--set",), dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
             help="override one config field, e.g. --set train.lr=2e-4 (repeatable; type-checked)"),
    # A string default goes through `type`, so a bad $CHIMERA_DEVICE is a usage error (exit 2) too.
    Argument(flags=("--device",), default_from=lambda: os.environ.get(DEVICE_ENV) or "auto", type=_device_name,
             metavar="{auto,cpu,cuda,mps}", help=f"default: ${DEVICE_ENV} (the container images set it), else "
             "auto: cuda, else mps, else cpu"),
    Argument(flags=("--precision",), choices=("auto", "fp32", "bf16", "fp16"), default=None,
             help="same as --set train.precision=P; default: accelerate launch's --mixed_precision "
             "($ACCELERATE_MIXED_PRECISION), else auto (fp32 on CPU and MPS, bf16 else fp16 on CUDA); bf16 only "
             "where the hardware has it (exit 2 otherwise)"),
    Argument(flags=("--matrix",), type=Path, default=None, path=READ_FILE, role="the matrix TOML",
             help="matrix TOML (default: the packaged one)"),
    Argument(flags=("--cache-dir",), type=Path, default=None, path=WRITE_DIR, role="the tokenizer cache",
             help="tokenizer cache; default $CHIMERA_CACHE_DIR or ~/.cache/chimera"),
    Argument(flags=("--quiet",), action="store_true", help="no progress bar"),
    Argument(flags=("--log-with",), action="extend", nargs="+", default=[], metavar="TRACKER",
             help="also send the config and every evaluation to these accelerate trackers (tensorboard, mlflow, "
             "wandb, ...; several allowed; its package must be installed, e.g. pip install "
             "'chimera-bench[trackers]'); files go to RUN_DIR/trackers/; default: none"),
)

_STORE = Argument(flags=("--store",), type=Path, default=None, path=WRITE_FILE, role="the history store",
                  help=f"history SQLite file; default ${HISTORY_ENV}, else {HISTORY_STORE}")
_RUN_DIRS = dict(flags=("paths",), nargs="+", type=Path, metavar="RUN_DIR", path=READ_ANY,
                 help="folders searched for record.json")

COMMANDS: tuple[Command, ...] = (
    Command(name="train", help="train one matrix cell and write its run record", handler="chimera.api:run_train",
            description="Train one cell; writes OUT/<cell>-<profile>-s<seed>/record.json.",
            arguments=(
                Argument(flags=("--cell",), required=True, help="a cell of the matrix file: baseline/dense, "
                         "baseline/moe, fixed/dense, fixed/moe or reference/bow"),
                Argument(flags=("--resume",), type=Path, metavar="RUN_DIR", path=EXISTING_WRITE_DIR,
                         role="the run folder to continue", help="continue an interrupted run from its last "
                         "checkpoint (same result as uninterrupted)"),
                *RUN_OPTIONS)),
    Command(name="matrix", help="train every cell of a profile (or an ablation family), one record each",
            handler="chimera.api:run_matrix",
            description="Train cells one after another; goes on past a failed cell and exits 1 at the end if any "
            "failed. With --ablation BASE: the base, the cell it is held against, and every leave-one-out and "
            "add-one-in variant between them (see the [ablations] tables of the matrix file), e.g. `chimera "
            "matrix --profile ci --ablation fixed/dense --seeds 0 1 2 --out runs/ablation-ci`.",
            arguments=(
                Argument(flags=("--cells",), nargs="+",
                         help="subset of cells (default: all; with --ablation, of its family)"),
                Argument(flags=("--ablation",), metavar="BASE",
                         help="run BASE's ablation family instead of the matrix's cells"),
                *RUN_OPTIONS,
                Argument(flags=("--seeds",), type=int, nargs="+", metavar="SEED",
                         help="several seeds, each cell once per seed (seed-major order); instead of --seed"))),
    Command(name="env", help="print the environment fingerprint and the device policy it would use",
            handler="chimera.handlers:run_env"),
    Command(name="reproduce", help="rerun a run from its record alone and diff the new record against it",
            handler="chimera.handlers:run_reproduce",
            description="Rebuild the run from RECORD.json (config, seed), refuse if the data or tokenizer "
            "fingerprints differ, train into --out, then print every metric that differs and the environment "
            "differences that could explain it. Exit 0 identical, 1 different.",
            arguments=(
                Argument(flags=("record",), type=Path, metavar="RECORD.json", path=READ_FILE,
                         role="the run record to rerun"),
                Argument(flags=("--out",), type=Path, default=Path("runs/reproduced"), path=WRITE_DIR,
                         role="the new run folder goes here",
                         help="folder for the new run folder (nothing is written elsewhere); default: %(default)s"),
                Argument(flags=("--data-dir",), path=READ_DIR, role="AG News train and test files",
                         help=f"AG News folder; default ${DATA_ENV}, else the Hugging Face hub"),
                Argument(flags=("--cache-dir",), type=Path, default=None, path=WRITE_DIR, role="the tokenizer cache",
                         help="tokenizer cache (as for train)"),
                Argument(flags=("--quiet",), action="store_true", help="no progress bar"))),
    Command(name="diff", help="two records, run folders or matrix folders side by side; exit 1 when they differ",
            handler="chimera.analysis.side_by_side:run_diff",
            description="Pair the records of A and B (one each: those two; else by cell and profile, and by seed "
            "where a side has several; unpaired ones are listed) and print per pair the input and environment "
            "differences, final metrics and time to target with B - A, how many curve points differ, and whether "
            "each side lies inside the packaged convergence bands of its profile and precision (shown, not part "
            "of the verdict). Writes OUT/diff.png: val loss, clean train loss and val accuracy of both sides "
            "overlaid. Exit 0 when every pair agrees within --tolerance and nothing is unpaired, 1 otherwise, "
            "2 on bad input.",
            arguments=(
                Argument(flags=("a",), type=Path, metavar="A", path=READ_ANY, role="the first side",
                         help="a record.json, a run folder, or a folder of run folders (searched recursively)"),
                Argument(flags=("b",), type=Path, metavar="B", path=READ_ANY, role="the second side",
                         help="the same for the side compared against A"),
                Argument(flags=("--out",), type=Path, default=Path("diff"), path=WRITE_DIR,
                         role="the figure goes here",
                         help="folder for diff.png (the curves of A and B overlaid); default: %(default)s"),
                Argument(flags=("--tolerance",), type=_tolerance, default=0.0, metavar="REL",
                         help="relative tolerance: numbers agree when |B - A| <= REL * max(|A|, |B|); default "
                         "%(default)s: any difference in a final metric, curve point or time to target counts "
                         "(wall-clock figures never do)"))),
    Command(name="bench", help="speed gate: compare two pytest-benchmark JSON files, normalised by the calibration "
            "GEMM", subcommands=(
                Command(name="compare", help="machine-normalised speed gate between two pytest-benchmark JSON files",
                        handler="chimera.gates.bench_gate:run_compare",
                        description="Compare median step times divided by the same file's calibration GEMM; exit 1 "
                        "when a benchmark is slower than the baseline by more than --threshold.",
                        arguments=(
                            Argument(flags=("new",), type=Path, metavar="NEW.json", path=READ_FILE,
                                     role="pytest-benchmark JSON to check",
                                     help="pytest-benchmark JSON of the run to check"),
                            Argument(flags=("baseline",), type=Path, metavar="BASELINE.json", path=READ_FILE,
                                     role="pytest-benchmark baseline",
                                     help="reference JSON, e.g. bench/baselines/cpu.json"),
                            Argument(flags=("--threshold",), type=float, default=SPEED_THRESHOLD,
                                     help="fail when a normalised time grows by more than this fraction; "
                                     "default %(default)s"),
                            Argument(flags=("--group",), dest="groups", action="append", metavar="PATTERN",
                                     help="benchmark group(s) to compare, shell patterns (repeatable); "
                                     "default: train-step"),
                            Argument(flags=("--markdown",), type=Path, metavar="FILE", default=None, path=WRITE_FILE,
                                     role="the markdown table is appended",
                                     help="also append the table as markdown to FILE, e.g. $GITHUB_STEP_SUMMARY"))),
            )),
    Command(name="bands", help="loss gate: build reference convergence bands from multi-seed runs, check runs "
            "against them", subcommands=(
                Command(name="build", help="compute per-cell convergence bands from multi-seed runs",
                        handler="chimera.gates.bands:run_bands",
                        description="Write mean ± max(3·std, floor) of final val loss, val acc and best step per "
                        "cell over seeds.",
                        arguments=(
                            Argument(**_RUN_DIRS, role="multi-seed run records"),
                            Argument(flags=("--out",), type=Path, required=True, path=WRITE_FILE,
                                     role="the bands JSON to write",
                                     help="bands JSON to write, e.g. chimera/gates/bands/ci.json"),
                            Argument(flags=("--min-seeds",), type=int, default=MIN_SEEDS,
                                     help="seeds required per cell; default %(default)s"))),
                Command(name="check", help="check runs against the reference convergence bands; exit 1 when "
                        "outside", handler="chimera.gates.bands:run_check_bands",
                        description="Print one line per run and each metric outside its cell's band; exit 1 when "
                        "any run is outside.",
                        arguments=(
                            Argument(**_RUN_DIRS, role="run records to check"),
                            Argument(flags=("--bands",), type=Path, default=None, path=READ_FILE,
                                     role="the bands JSON", help=f"bands JSON; default {BANDS_DIR}/<profile>.json "
                                     f"(fp32 runs) or {BANDS_DIR}/<profile>-<precision>.json packaged with "
                                     "chimera"))),
            )),
    Command(name="doctor", help="diagnose run records (memorisation, leakage, divergence, routing); exit 1 on errors",
            handler="chimera.analysis.doctor:run_doctor",
            description="Read run records and print findings with evidence and a fix; exit 1 when any is an error.",
            arguments=(
                Argument(flags=("paths",), nargs="+", type=Path, metavar="RECORD.json|RUN_DIR", path=READ_ANY,
                         role="records to diagnose",
                         help="record files, or folders searched recursively for record.json"),
                Argument(flags=("--json",), action="store_true", help="print findings as JSON"),
                Argument(flags=("--data-dir",), type=Path, default=None, path=READ_DIR,
                         role="AG News for the leakage rescan", help="AG News folder for the leakage rescan; "
                         f"default: the record's data.source, else ${DATA_ENV}"))),
    Command(name="report", help="render the matrix as markdown + HTML with plots",
            handler="chimera.analysis.report:run_report",
            description="Write report.md, report.html (images embedded) and PNG plots from a folder of records.",
            arguments=(
                Argument(flags=("run_dir",), type=Path, metavar="RUN_DIR", path=READ_DIR,
                         role="folder of run records", help="folder searched recursively for record.json"),
                Argument(flags=("--out",), type=Path, default=Path("report"), path=WRITE_DIR,
                         role="the report goes here", help="report folder; default: %(default)s"),
                Argument(flags=("--bench-dir",), type=Path, default=None,  # None: the default, which may be absent
                         path=READ_DIR, role="pytest-benchmark results", help="pytest-benchmark JSON results for "
                         "the throughput figure; default: bench/results when present"),
                Argument(flags=("--history",), type=Path, default=None, metavar="STORE", path=READ_FILE,
                         role="the history store to draw",
                         help="also draw the trends of a `chimera history` store (a History section and figure)"))),
    Command(name="history", help="results across commits and machines: add records and benchmark JSON, show "
            "trends, export them, draw them as a site", default="show",
            description="chimera history add FILE_OR_FOLDER... ingests results into one SQLite store; chimera "
            "history [show] prints per cell the normalised step time and final metrics by commit and machine, "
            "flagging the commits where the speed gate or the loss bands would have failed; chimera history export "
            "writes the store's rows as CSV or JSON; chimera history site OUT/ draws them as offline HTML pages.",
            subcommands=(
                Command(name="add", help="ingest run records and pytest-benchmark JSON into the store",
                        handler="chimera.history.command:run_history_add",
                        description="Add files (a folder: every record.json and every benchmark JSON outside run "
                        "folders, recursively). Re-adding a file already in the store changes nothing.",
                        arguments=(
                            Argument(flags=("paths",), nargs="+", type=Path, metavar="FILE_OR_FOLDER", path=READ_ANY,
                                     role="results to add to the history",
                                     help="record.json, benchmark JSON, or folders holding them"),
                            Argument(flags=("--commit",), default=None, help="commit for files that do not say "
                                     "theirs (records made outside a git checkout); a file that names its commit "
                                     "keeps it"),
                            _STORE)),
                Command(name="show", help="per cell: normalised step time and final metrics by commit and machine "
                        "(the default)", handler="chimera.history.command:run_history_show",
                        arguments=(
                            _STORE,
                            Argument(flags=("--cells",), nargs="+", default=None, metavar="PATTERN",
                                     help="only these cells (shell patterns, e.g. 'fixed/*'); default: all"),
                            Argument(flags=("--bands",), type=Path, default=None, path=READ_FILE, role="the bands JSON",
                                     help="bands JSON for the loss gate; default: the packaged bands of each run's "
                                     "profile and precision (runs without any are shown as `no bands`)"),
                            Argument(flags=("--threshold",), type=float, default=SPEED_THRESHOLD,
                                     help="speed gate: a normalised step time more than this fraction above the "
                                     "previous commit's on the same machine is a regression; default "
                                     f"{SPEED_THRESHOLD}"))),
                Command(name="export", help="every row of the store as CSV or JSON, for a spreadsheet or pandas",
                        handler="chimera.history.command:run_history_export",
                        description="One row per run record and per benchmark with every column the store holds "
                        "(the file's: hash, kind, path, commit, machine, calibration, its text as `body`; then the "
                        "run's or the benchmark's), ordered by kind, commit, cell, profile, precision, seed and "
                        "benchmark name, so two exports of one store are identical.",
                        arguments=(
                            _STORE,
                            Argument(flags=("--format",), required=True, metavar="{csv,json}",
                                     help="csv (a header line; an absent value is empty) or json (a list of "
                                     "objects, absent values null)"),
                            Argument(flags=("--out",), type=Path, default=None, path=WRITE_FILE,
                                     role="the export to write", help="file to write; default: stdout"))),
                Command(name="site", help="a static HTML site of the trends, offline: one page of charts per cell",
                        handler="chimera.history.command:run_history_site",
                        description="Write OUT/index.html (the cells) and one page per cell: per profile, the "
                        "normalised step time, MFU, time to each target and test accuracy over commits, one series "
                        "per machine and precision, each point linked to its file. Opened as a file: no server, "
                        "nothing fetched; a figure the store holds no number for says so on the page.",
                        arguments=(
                            Argument(flags=("out_dir",), type=Path, metavar="OUT", path=WRITE_DIR,
                                     role="the site goes here", help="folder for index.html and the cell pages "
                                     "(created; pages of the same name are replaced)"),
                            _STORE)),
            )),
    Command(name="tables", help="the README and docs tables generated from committed results: check or rewrite them",
            subcommands=(
                Command(name="check", help="print each table that differs from its sources; exit 1 when any does",
                        handler="chimera.handlers:run_tables_check"),
                Command(name="write", help="rewrite the generated tables from their sources; print the tables "
                        "whose text changed", handler="chimera.handlers:run_tables_write"),
            )),
)

# Old spellings, accepted for one release: `chimera OLD ...` runs NEW and says so on stderr.
RENAMED: dict[str, str] = {"check-bands": "bands check"}


def leaves(commands: tuple[Command, ...] = COMMANDS) -> dict[str, Command]:
    """Every command that runs a handler, by its full name ("train", "bands check", "history add")."""
    found: dict[str, Command] = {}
    for command in commands:
        if command.handler:
            found[command.name] = command
        for sub in command.subcommands:
            found[f"{command.name} {sub.name}"] = sub
    return found
