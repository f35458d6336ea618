"""Reproducibility check: train a profile's matrix twice from scratch and demand bitwise-equal results.

    tox -e repro                                  # the ci matrix, ~2 x 10 minutes on 2 CPU cores
    python scripts/repro.py --set data.train_samples=256 --set train.max_steps=40 ...   # a quick variant
    CHIMERA_REPRO_SECOND_SEED=1 tox -e repro      # must FAIL: proves the comparison has teeth

Steps, each in fresh processes with a fresh tokenizer cache (and a different PYTHONHASHSEED, so nothing
may depend on str hashing order):
  1. `chimera matrix` twice with the same seed; every record's curves and final metrics must be equal
     (exact JSON numbers; wall-clock fields, run ids and timestamps are not results and are ignored);
  2. `chimera reproduce` on one record of the first run: rebuilt from the record alone, the diff must be
     empty;
  3. `chimera bands check` on the first run against the packaged bands of its profile and precision
     (chimera.gates.bands.bands_path: bands/<profile>.json for fp32, bands/<profile>-<precision>.json
     otherwise) when that file exists and no --set overrides are in force (bands describe the unmodified
     profile); otherwise skipped with a note.

Every option can come from the environment, which is how tox passes it:
  --seed / CHIMERA_REPRO_SEED (0)        --second-seed / CHIMERA_REPRO_SECOND_SEED (same as --seed)
  --set / CHIMERA_REPRO_SET (space-separated section.key=value)   --cells / CHIMERA_REPRO_CELLS
  --profile / CHIMERA_REPRO_PROFILE (ci) --out / CHIMERA_REPRO_OUT (a temporary folder, kept)
  --data-dir / CHIMERA_DATA_DIR
Exit code 0 when every step passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chimera.analysis.record_diff import diff_records, format_diff
from chimera.gates.bands import bands_path
from chimera.records.store import find_records, load_record

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--profile", default=env("CHIMERA_REPRO_PROFILE", "ci"))
    parser.add_argument("--cells", nargs="+", default=(env("CHIMERA_REPRO_CELLS") or "").split() or None)
    parser.add_argument("--seed", type=int, default=int(env("CHIMERA_REPRO_SEED", "0")))
    parser.add_argument("--second-seed", type=int, default=None, help="seed of the second run (default: --seed)")
    parser.add_argument("--set", dest="overrides", action="append", default=(env("CHIMERA_REPRO_SET") or "").split())
    parser.add_argument("--out", type=Path, default=env("CHIMERA_REPRO_OUT"))
    parser.add_argument("--data-dir", default=env("CHIMERA_DATA_DIR"))
    args = parser.parse_args()
    if args.second_seed is None:
        args.second_seed = int(env("CHIMERA_REPRO_SECOND_SEED", str(args.seed)))
    args.out = Path(args.out or tempfile.mkdtemp(prefix="chimera-repro-"))
    return args


def chimera(*args: str, hash_seed: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "CHIMERA_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "chimera", *args], env=env, text=True, capture_output=True)


def train_matrix(args: argparse.Namespace, name: str, seed: int, hash_seed: str) -> bool:
    command = ["matrix", "--profile", args.profile, "--seed", str(seed), "--out", str(args.out / name), "--quiet"]
    command += ["--data-dir", args.data_dir] if args.data_dir else []
    command += ["--cells", *args.cells] if args.cells else []
    command += [arg for assignment in args.overrides for arg in ("--set", assignment)]
    started = time.perf_counter()
    done = chimera(*command, hash_seed=hash_seed, cache=args.out / f"cache-{name}")
    print(f"  {name}: seed {seed}, exit {done.returncode}, {time.perf_counter() - started:.0f} s")
    if done.returncode != 0:
        print(indent(done.stderr.strip()[-3000:]))
    return done.returncode == 0


def compare_runs(first: Path, second: Path) -> bool:
    records = {record.cell: record for record in map(load_record, find_records([first]))}
    again = {record.cell: record for record in map(load_record, find_records([second]))}
    if set(records) != set(again):
        print(f"  the runs trained different cells: {sorted(records)} vs {sorted(again)}")
        return False
    ok = True
    for cell in sorted(records):
        diff = diff_records(records[cell], again[cell])
        points = len(records[cell].curves)
        if diff.identical:
            print(f"  {cell}: identical ({points} evaluations and the final metrics, bit for bit)")
        else:
            ok = False
            report = format_diff(diff, old_name="first", new_name="second", max_metrics=8)
            print(f"  {cell}: DIFFERENT\n" + indent(report))
    return ok


def reproduce_one(args: argparse.Namespace) -> bool:
    record = find_records([args.out / "first"])[0]
    command = ["reproduce", str(record), "--out", str(args.out / "reproduced"), "--quiet"]
    command += ["--data-dir", args.data_dir] if args.data_dir else []
    done = chimera(*command, hash_seed="2", cache=args.out / "cache-reproduced")
    print(f"  chimera reproduce {record.relative_to(args.out)}: exit {done.returncode}")
    print(indent((done.stdout + done.stderr).strip()))
    return done.returncode == 0


def check_bands(args: argparse.Namespace) -> bool:
    """The first run against the packaged bands of its profile and precision (what `chimera bands check` picks)."""
    if args.overrides:
        print(f"  skipped: bands describe the unmodified {args.profile} profile, and --set overrides are in force")
        return True
    precisions = sorted({load_record(path).precision.value for path in find_records([args.out / "first"])})
    if len(precisions) != 1:
        print(f"  the first run holds records of {len(precisions)} precisions ({', '.join(precisions)}), expected 1")
        return False
    bands = bands_path(args.profile, precisions[0])
    if not bands.is_file():
        print(f"  skipped: no packaged bands for {precisions[0]} runs of the {args.profile} profile ({bands.name})")
        return True
    done = chimera("bands", "check", str(args.out / "first"), "--bands", str(bands), hash_seed="0",
                   cache=args.out / "cache-first")
    print(f"  chimera bands check: exit {done.returncode}")
    print(indent((done.stdout + done.stderr).strip()))
    return done.returncode == 0


def indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # progress shows live under tox, whose output is a pipe
    args = parse_args()
    print(f"repro: profile {args.profile}, cells {args.cells or 'all'}, seeds {args.seed} and {args.second_seed}, "
          f"overrides {args.overrides or 'none'} -> {args.out}")
    results = {}
    print("1. the matrix twice, fresh processes")
    first = train_matrix(args, "first", args.seed, "0")
    second = train_matrix(args, "second", args.second_seed, "1")
    trained = first and second
    results["two runs agree"] = trained and compare_runs(args.out / "first", args.out / "second")
    print("2. a record rerun from the record alone")
    results["reproduce"] = trained and reproduce_one(args)
    print("3. reference convergence bands")
    results["bands"] = trained and check_bands(args)
    for name, ok in results.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
