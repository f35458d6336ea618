"""Command-line front door: parse, call one function, map errors to exit codes.

    chimera train --cell fixed/dense --profile ci --data-dir path/to/ag_news --out runs/
    chimera matrix --profile ci --out runs/ci
    chimera env
    chimera reproduce runs/ci/fixed-dense-ci-s0/record.json --out runs/reproduced
    chimera history add runs/ci bench/results/ci/bench.json && chimera history

Exit codes: 0 success; 1 a run failed, a check found a problem or a reproduction differs; 2 bad input
(one-line message, no traceback); 130 interrupted (a resumable checkpoint was written).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from chimera import __version__
from chimera.errors import ChimeraError
from chimera.paths import check_path_arguments

DATA_ENV = "CHIMERA_DATA_DIR"
DEVICE_ENV = "CHIMERA_DEVICE"
DEVICES = ("auto", "cpu", "cuda", "mps")
EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
log = logging.getLogger("chimera")


def _data_dir(value: str | None) -> Path | None:
    """--data-dir, else $CHIMERA_DATA_DIR, else None (the Hugging Face hub)."""
    raw = value or os.environ.get(DATA_ENV) or None
    if raw is None:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        source = "--data-dir" if value else f"${DATA_ENV}"
        raise ChimeraError(f"{source} {raw}: no such folder (it must hold train and test files)")
    return path


def _device_name(value: str) -> str:
    if value not in DEVICES:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(DEVICES)} (from --device or "
                                         f"${DEVICE_ENV})")
    return value


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="ci", help="profile from the matrix file: ci (minutes on a CPU) or "
                        "full (the original setup); default: %(default)s")
    parser.add_argument("--data-dir", help=f"local AG News folder (hub schema or original CSV layout); default: "
                        f"${DATA_ENV}, else download from the Hugging Face hub")
    parser.add_argument("--out", default="runs", type=Path, help="folder for run folders; default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="seed for data subsets, init, order, augmentation")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config field, e.g. --set train.lr=2e-4 (repeatable; type-checked)")
    # A string default goes through `type`, so a bad $CHIMERA_DEVICE is a usage error (exit 2) too.
    parser.add_argument("--device", default=os.environ.get(DEVICE_ENV) or "auto", type=_device_name,
                        metavar="{auto,cpu,cuda,mps}",
                        help=f"default: ${DEVICE_ENV} (the container images set it), else auto: cuda, else mps, "
                        "else cpu")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=None,
                        help="same as --set train.precision=P; default: accelerate launch's --mixed_precision "
                        "($ACCELERATE_MIXED_PRECISION), else auto (fp32 on CPU and MPS, bf16 else fp16 on CUDA); "
                        "bf16 only where the hardware has it (exit 2 otherwise)")
    parser.add_argument("--matrix", type=Path, default=None, help="matrix TOML (default: the packaged one)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="tokenizer cache; default $CHIMERA_CACHE_DIR or ~/.cache/chimera")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--log-with", action="extend", nargs="+", default=[], metavar="TRACKER",
                        help="also send the config and every evaluation to these accelerate trackers (tensorboard, "
                        "mlflow, wandb, ...; several allowed; its package must be installed, e.g. "
                        "pip install 'chimera-bench[trackers]'); files go to RUN_DIR/trackers/; default: none")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chimera", description="Chimera Bench: train and benchmark small transformer classifiers on "
        "AG News ({baseline, fixed} x {dense, moe}) and check that they generalise.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train one matrix cell and write its run record",
                           description="Train one cell; writes OUT/<cell>-<profile>-s<seed>/record.json.")
    train.add_argument("--cell", required=True, help="a cell of the matrix file: baseline/dense, baseline/moe, "
                       "fixed/dense, fixed/moe or reference/bow")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR",
                       help="continue an interrupted run from its last checkpoint (same result as uninterrupted)")
    _add_run_options(train)

    matrix = sub.add_parser("matrix", help="train every cell of a profile (or an ablation family), one record each",
                            description="Train cells one after another; goes on past a failed cell and exits 1 "
                            "at the end if any failed. With --ablation BASE: the base, the cell it is held "
                            "against, and every leave-one-out and add-one-in variant between them (see the "
                            "[ablations] tables of the matrix file), e.g. `chimera matrix --profile ci "
                            "--ablation fixed/dense --seeds 0 1 2 --out runs/ablation-ci`.")
    matrix.add_argument("--cells", nargs="+", help="subset of cells (default: all; with --ablation, of its family)")
    matrix.add_argument("--ablation", metavar="BASE", help="run BASE's ablation family instead of the matrix's cells")
    _add_run_options(matrix)
    matrix.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                        help="several seeds, each cell once per seed (seed-major order); instead of --seed")

    sub.add_parser("env", help="print the environment fingerprint and the device policy it would use")

    reproduce = sub.add_parser(
        "reproduce", help="rerun a run from its record alone and diff the new record against it",
        description="Rebuild the run from RECORD.json (config, seed), refuse if the data or tokenizer "
        "fingerprints differ, train into --out, then print every metric that differs and the environment "
        "differences that could explain it. Exit 0 identical, 1 different.")
    reproduce.add_argument("record", type=Path, metavar="RECORD.json")
    reproduce.add_argument("--out", type=Path, default=Path("runs/reproduced"),
                           help="folder for the new run folder (nothing is written elsewhere); default: %(default)s")
    reproduce.add_argument("--data-dir", help=f"AG News folder; default ${DATA_ENV}, else the Hugging Face hub")
    reproduce.add_argument("--cache-dir", type=Path, default=None, help="tokenizer cache (as for train)")
    reproduce.add_argument("--quiet", action="store_true", help="no progress bar")

    from chimera.analysis import doctor, report  # none imports torch: parsing stays fast
    from chimera.gates import bands, bench_gate

    bench_gate.add_bench_arguments(sub.add_parser(
        "bench", help="speed gate: compare two pytest-benchmark JSON files, normalised by the calibration GEMM"))
    bands.add_bands_arguments(sub.add_parser(
        "bands", help="build reference convergence bands from multi-seed runs"))
    bands.add_check_bands_arguments(sub.add_parser(
        "check-bands", help="loss gate: check runs against the reference convergence bands; exit 1 when outside"))

    doctor.add_doctor_arguments(sub.add_parser(
        "doctor", help="diagnose run records (memorisation, leakage, divergence, routing); exit 1 on errors",
        description="Read run records and print findings with evidence and a fix; exit 1 when any is an error."))
    report.add_report_arguments(sub.add_parser(
        "report", help="render the matrix as markdown + HTML with plots",
        description="Write report.md, report.html (images embedded) and PNG plots from a folder of records."))
    from chimera.history.command import add_history_arguments
    add_history_arguments(sub.add_parser(
        "history", help="results across commits and machines: add records and benchmark JSON, show trends",
        description="chimera history add FILE_OR_FOLDER... ingests results into one SQLite store; chimera "
        "history [show] prints per cell the normalised step time and final metrics by commit and machine, "
        "flagging the commits where the speed gate or the loss bands would have failed."))
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # its per-file checkpoint chatter
    args = build_parser().parse_args(argv)
    try:
        check_path_arguments(args)  # before any work: a refused command leaves nothing behind
        return _dispatch(args)
    except ChimeraError as exc:
        print(f"chimera: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # a second Ctrl-C: stop now; the record says failed, checkpoints stay
        print("chimera: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "env":
        return _env()
    if args.command == "doctor":
        from chimera.analysis.doctor import run_doctor
        return run_doctor(args)
    if args.command == "report":
        from chimera.analysis.report import run_report
        return run_report(args)
    if args.command == "bench":
        from chimera.gates.bench_gate import run_bench
        return run_bench(args)
    if args.command == "bands":
        from chimera.gates.bands import run_bands
        return run_bands(args)
    if args.command == "check-bands":
        from chimera.gates.bands import run_check_bands
        return run_check_bands(args)
    if args.command == "history":
        from chimera.history.command import run_history
        return run_history(args)
    if args.command == "reproduce":
        from chimera.reproduce import reproduce_main
        return reproduce_main(args.record, out_dir=args.out, data_dir=_data_dir(args.data_dir),
                              cache_dir=args.cache_dir, quiet=args.quiet, out=sys.stdout)
    from chimera.matrix import load_matrix

    matrix = load_matrix(args.matrix)
    data_dir = _data_dir(args.data_dir)
    overrides = _with_precision(args.overrides, args.precision)
    if args.log_with:  # a tracker that is unknown or not installed: exit 2 before any work
        from chimera.train.tracking import check_log_with
        args.log_with = check_log_with(args.log_with)
    from chimera.train.plan import make_plan

    if args.command == "train":
        config = matrix.resolve(args.cell, args.profile, seed=args.seed, device=args.device, overrides=overrides)
        plan = make_plan(config, out_dir=args.resume.parent if args.resume else args.out)
        if args.resume and plan.run_dir.resolve() != args.resume.resolve():
            raise ChimeraError(f"--resume {args.resume}: it is not the run folder of {args.cell} "
                               f"seed {args.seed} profile {args.profile}")
        return _train_one(plan, data_dir, args, resume=bool(args.resume))
    # every plan first: a typo, or a precision this hardware cannot run, fails before an hour of training
    plans = [make_plan(config, out_dir=args.out) for config in _matrix_configs(matrix, args, overrides)]
    codes = []
    for plan in plans:
        try:
            codes.append(_train_one(plan, data_dir, args, resume=False))
        except ChimeraError as exc:
            print(f"chimera: error: {plan.config.cell}: {exc}", file=sys.stderr)
            codes.append(EXIT_FAILED)
        if codes[-1] == EXIT_INTERRUPTED:  # Ctrl-C / SIGTERM stops the whole matrix, not just one cell
            log.info("matrix %s: interrupted during %s; resume it with train --resume", args.profile,
                     plan.config.cell)
            return EXIT_INTERRUPTED
    log.info("matrix %s: %d of %d cells ok", args.profile, codes.count(0), len(codes))
    return 0 if all(code == 0 for code in codes) else EXIT_FAILED


def _matrix_configs(matrix, args, overrides: list[str]) -> list:
    """What `chimera matrix` trains: the matrix's cells or BASE's ablation family, for each seed in turn."""
    if args.seeds is not None and args.seed != 0:
        raise ChimeraError("give --seed or --seeds, not both")
    seeds = args.seeds if args.seeds is not None else [args.seed]
    if len(set(seeds)) != len(seeds):
        raise ChimeraError(f"--seeds {' '.join(map(str, seeds))}: a seed is repeated")
    configs = []
    for seed in seeds:
        if args.ablation:
            family = matrix.ablation(args.ablation, args.profile, seed=seed, device=args.device, overrides=overrides)
        else:
            family = [matrix.resolve(c, args.profile, seed=seed, device=args.device, overrides=overrides)
                      for c in matrix.cells]
        names = [config.cell for config in family]
        for cell in args.cells or ():
            if cell not in names:
                raise ChimeraError(f"--cells {cell}: not one of {', '.join(names)}")
        configs += [config for config in family if not args.cells or config.cell in args.cells]
    return configs


def _with_precision(overrides: list[str], precision: str | None) -> list[str]:
    """--precision P is --set train.precision=P; both given and different is ambiguous, so refused."""
    if precision is None:
        return overrides
    from chimera.config import parse_assignment
    for text in overrides:
        section, key, value = parse_assignment(text)
        if (section, key) == ("train", "precision") and value != precision:
            raise ChimeraError(f"--precision {precision} and --set {text} disagree; give one of them")
    return [*overrides, f"train.precision={precision}"]


def _train_one(plan, data_dir: Path | None, args, *, resume: bool) -> int:
    from chimera.train.recipe import RunFailed
    from chimera.train.run import run_plan

    try:
        record = run_plan(plan, data_dir=data_dir, cache_dir=args.cache_dir, quiet=args.quiet, resume=resume,
                          log_with=tuple(args.log_with))
    except RunFailed as exc:
        print(f"chimera: run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    m = record.final_metrics
    log.info("%s: %s at step %d; clean train loss %s, val loss %s, val acc %s, test acc %s -> %s",
             record.cell, record.status, m.steps, _shown(m.clean_train_loss, ".4f"), _shown(m.val_loss, ".4f"),
             _shown(m.val_acc, ".3f"), _shown(m.test_acc, ".3f"), plan.run_dir / "record.json")
    return EXIT_INTERRUPTED if record.status == "interrupted" else 0


def _shown(value: float | None, spec: str) -> str:
    """A metric for the summary line: "n/a" when it was not measured (0.0 is a measurement)."""
    return "n/a" if value is None else format(value, spec)


def _env() -> int:
    from chimera.train.device import (
        ACCELERATE_ENV,
        describe_environment,
        native_precisions,
        probe_device,
        resolve_precision,
    )

    info = probe_device("auto")
    choice = resolve_precision("auto", os.environ.get(ACCELERATE_ENV))
    policy = choice.policy_for(info)
    native, not_native = native_precisions(info)
    print(json.dumps({"environment": describe_environment(info, policy).to_json(), "policy": vars(policy),
                      "precision": choice.record(policy).to_json(), "native_precisions": native,
                      "not_native": not_native}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
