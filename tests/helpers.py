"""Plain helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chimera.records.record import RunRecord


def run_chimera(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process, as a user would."""
    result = subprocess.run([sys.executable, "-m", "chimera", *args], capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"chimera {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def copy_records(runs: Path, keep: Path) -> list[Path]:
    """Copy every RUN/record.json under `runs` to keep/RUN/record.json (evidence of a CI run); the copies."""
    copies = []
    for record in sorted(Path(runs).glob("*/record.json")):
        target = Path(keep) / record.parent.name / record.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record, target)
        copies.append(target)
    return copies


def load_cell(runs: Path, cell: str) -> RunRecord:
    """The first record of `cell` under `runs`, typed (load_record validates it against the schema)."""
    from chimera.records.store import load_record

    matches = sorted(runs.glob(f"{cell.replace('/', '-')}-*/record.json"))
    assert matches, f"no record for {cell} under {runs}"
    return load_record(matches[0])


# A real run in seconds: 256 training rows, a one-layer d32 encoder, 16 tokens. `train.warmup_steps`
# comes before `train.max_steps` because each --set is validated on its own, against the cell's values.
# `data.train_pool=all`: the folders these runs read (a slice, a look-alike) hold not the manifest's pool.
TINY = ("data.train_pool=all", "data.train_samples=256", "data.val_samples=64", "data.test_samples=64",
        "data.max_length=16", "data.vocab_size=512", "model.d_model=32", "model.d_ff=64", "model.n_layers=1",
        "train.warmup_steps=5", "train.max_steps=40", "train.eval_every=10")


def sets(*assignments: str) -> list[str]:
    """["--set", a, "--set", b, ...]."""
    return [arg for assignment in assignments for arg in ("--set", assignment)]


def quiet_env(**extra: str) -> dict[str, str]:
    """The environment for training subprocesses: one torch thread (on a shared 2-core box a tiny op can
    stall ~100 ms while the thread pool waits for a busy core) plus `extra`. Every run a test compares
    uses it, so comparisons stay like for like."""
    # a subprocess is a session of its own: xdist's worker variables would make a pytest inside it (the GPU
    # check's benchmark pass) believe it runs under xdist, which turns benchmarks off
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    return {**inherited, "OMP_NUM_THREADS": "1", **extra}


TOPICS = (("council", "minister", "treaty", "election"), ("league", "striker", "coach", "season"),
          ("shares", "profit", "market", "investor"), ("software", "satellite", "chip", "browser"))


def write_synthetic_ag_news(folder: Path, *, n_train: int = 160, n_test: int = 64) -> Path:
    """A hub-layout AG News look-alike (text,label; 4 topics with their own words), for runs that need
    no real text. Every row is distinct, so the leakage guard keeps them all."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 10_000)):
        rows = ["text,label"]
        for i in range(offset, offset + n):
            words = TOPICS[i % 4]
            rows.append(f'"{words[i % 3]} {words[(i // 4) % 4]} report {i} {words[3 - i % 3]}",{i % 4}')
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


SYNTHETIC_TINY = ("data.train_pool=all", "data.train_samples=64", "data.val_samples=32", "data.test_samples=0",
                  "data.max_length=12", "data.vocab_size=128", "model.d_model=16", "model.d_ff=32", "model.n_layers=1",
                  "train.batch_size=16", "train.warmup_steps=2", "train.max_steps=20", "train.eval_every=5",
                  "augment.synonym_prob=0")
