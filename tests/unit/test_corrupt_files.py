"""Every file the project reads back, truncated or overwritten with garbage, gives one line naming the
file (exit 2), never a traceback, and leaves the folder it lives in exactly as it was.

Cases are (file, corruption); each builds a valid file first, then damages it. The tokenizer cache is
the exception by design: a damaged cache entry is retrained (test_tokenizer.py), not refused.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chimera import cli
from chimera.records.store import write_record
from chimera.train.checkpoint import CHECKPOINT, STATE_FILE
from tests.helpers import SYNTHETIC_TINY, quiet_env, sets, write_synthetic_ag_news
from tests.unit.record_factory import run_record

REPO = Path(__file__).resolve().parents[2]
GARBAGE = bytes(range(256)) * 4


def _record(root: Path) -> tuple[Path, list[str]]:
    run = root / "runs" / "fixed-dense-ci-s0"
    write_record(run_record("fixed/dense"), run)
    return run / "record.json", ["doctor", str(run)]


def _record_for_reproduce(root: Path) -> tuple[Path, list[str]]:
    path, _ = _record(root)
    return path, ["reproduce", str(path), "--out", str(root / "again")]


def _bands(root: Path) -> tuple[Path, list[str]]:
    record, _ = _record(root)
    path = root / "bands.json"
    shutil.copy(REPO / "chimera/gates/bands/ci.json", path)
    return path, ["bands", "check", str(record.parent), "--bands", str(path)]


def _speed_baseline(root: Path) -> tuple[Path, list[str]]:
    path, new = root / "baseline.json", root / "new.json"
    shutil.copy(REPO / "bench/baselines/cpu.json", path)
    shutil.copy(REPO / "bench/baselines/cpu.json", new)
    return path, ["bench", "compare", str(new), str(path)]


def _matrix(root: Path) -> tuple[Path, list[str]]:
    path = root / "matrix.toml"
    shutil.copy(REPO / "chimera/matrix.toml", path)
    return path, ["train", "--cell", "fixed/dense", "--matrix", str(path), "--out", str(root / "runs")]


def _checkpoint(root: Path) -> tuple[Path, list[str]]:
    data = write_synthetic_ag_news(root / "data")
    run = root / "runs" / "fixed-dense-ci-s0"
    state = run / CHECKPOINT / STATE_FILE
    state.parent.mkdir(parents=True)
    state.write_text('{"step": 10, "config": {}, "curves": []}\n')
    return state, ["train", "--cell", "fixed/dense", "--device", "cpu", "--quiet", "--resume", str(run),
                   "--data-dir", str(data), "--cache-dir", str(root / "cache"), *sets(*SYNTHETIC_TINY)]


FILES = {"record (doctor)": _record, "record (reproduce)": _record_for_reproduce, "bands": _bands,
         "speed baseline": _speed_baseline, "matrix file": _matrix, "checkpoint state": _checkpoint}


def _truncate(raw: bytes) -> bytes:
    """Cut inside a quoted string, so no format reads the rest as valid."""
    middle = raw.index(b'"', len(raw) // 2)
    return raw[:middle + 2]


CORRUPTIONS = {"truncated": _truncate, "garbage": lambda raw: GARBAGE, "empty": lambda raw: b""}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_file_read_back_exits_2_naming_it(tmp_path, capsys, monkeypatch, restore_torch_state, name,
                                                    corruption):
    monkeypatch.chdir(tmp_path)
    path, argv = FILES[name](tmp_path)
    path.write_bytes(CORRUPTIONS[corruption](path.read_bytes()))
    before = _snapshot(path.parent)

    code = cli.main(argv)

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0] or path.name in lines[0], lines[0]
    if corruption != "empty" or name != "matrix file":  # an empty TOML is valid: the message names what is missing
        assert any(word in lines[0] for word in ("again", "rebuild", "restore", "needs")), lines[0]
    assert _snapshot(path.parent) == before, "the folder of a damaged file must be left as it was"


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory) -> tuple[Path, Path]:
    """A real resumable run folder: a tiny run stopped by SIGTERM at step 7 (checkpoint written)."""
    root = tmp_path_factory.mktemp("interrupted")
    data = write_synthetic_ag_news(root / "data")
    args = ["train", "--cell", "fixed/dense", "--profile", "ci", "--device", "cpu", "--quiet", "--out",
            str(root / "runs"), "--data-dir", str(data), "--cache-dir", str(root / "cache"), *sets(*SYNTHETIC_TINY)]
    done = subprocess.run([sys.executable, str(REPO / "tests/fault_injection.py"), "--signal", "TERM", "--at-step",
                           "7", "--", *args], capture_output=True, text=True, env=quiet_env(), timeout=300)
    assert done.returncode == 130, done.stderr[-2000:]
    return root / "runs" / "fixed-dense-ci-s0", data


@pytest.mark.slow  # its fixture trains in a subprocess
@pytest.mark.parametrize("corruption", CORRUPTIONS)
@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.bin", "rng_0.json"])
def test_a_damaged_checkpoint_file_exits_2_naming_the_checkpoint(tmp_path, capsys, restore_torch_state,
                                                                 interrupted_run, name, corruption):
    source, data = interrupted_run
    run = tmp_path / "runs" / source.name
    shutil.copytree(source, run)
    damaged = run / CHECKPOINT / name
    assert damaged.is_file(), sorted(p.name for p in damaged.parent.iterdir())
    raw = damaged.read_bytes()
    damaged.write_bytes(raw[: len(raw) // 2] if corruption == "truncated" else CORRUPTIONS[corruption](raw))
    before = _snapshot(run)

    code = cli.main(["train", "--cell", "fixed/dense", "--device", "cpu", "--quiet", "--resume", str(run),
                     "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"), *sets(*SYNTHETIC_TINY)])

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(run / CHECKPOINT) in lines[0], lines[0]
    assert _snapshot(run) == before, "a refused resume must leave the run folder as it was"
