"""--precision and accelerate's launch setting, end to end: the record says what ran and who chose it,
and a precision the hardware cannot run is one line and exit 2 before anything is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chimera.records.record import Precision, RunRecord
from chimera.records.store import load_record
from chimera.train.device import probe_device
from tests.helpers import SYNTHETIC_TINY, quiet_env, sets, write_synthetic_ag_news

pytestmark = pytest.mark.slow  # trains in subprocesses, one per precision case

NO_NATIVE_BF16 = not probe_device("cpu").cpu_bf16_supported
needs_avx2_only = pytest.mark.skipif(not NO_NATIVE_BF16, reason="this CPU has native bf16: bf16 is legal here")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic_ag_news(tmp_path_factory.mktemp("data"))


def _chimera(tmp_path: Path, data: Path, *extra: str, launch: str | None = None, command: str = "train",
             accelerate_launch: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    cell = ["--cell", "fixed/dense"] if command == "train" else ["--cells", "fixed/dense"]
    args = [command, *cell, "--profile", "ci", "--device", "cpu", "--quiet", "--out", str(tmp_path),
            "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"), *sets(*SYNTHETIC_TINY), *extra]
    env = quiet_env()
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    if launch is not None:
        env["ACCELERATE_MIXED_PRECISION"] = launch
    runner = ([sys.executable, "-m", "accelerate.commands.launch", *accelerate_launch, "-m", "chimera"]
              if accelerate_launch else [sys.executable, "-m", "chimera"])
    return subprocess.run([*runner, *args], capture_output=True, text=True, env=env, timeout=300)


def _record(tmp_path: Path) -> RunRecord:
    return load_record(tmp_path / "fixed-dense-ci-s0")  # validated against the schema as it loads


def _refused(done: subprocess.CompletedProcess, tmp_path: Path, fragment: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert fragment in lines[0]
    assert not list(tmp_path.rglob("record.json")), "a refused precision must not leave a record"


@pytest.mark.parametrize(("launch", "extra", "value", "source"), [
    (None, (), "fp32", "auto"),
    ("no", (), "fp32", "accelerate"),
    ("bf16", ("--precision", "fp32"), "fp32", "config"),  # the flag beats the launch setting
    ("bf16", ("--set", "train.precision=fp32"), "fp32", "config"),  # ... and so does --set
])
def test_the_record_says_which_precision_ran_and_who_chose_it(tmp_path, data, launch, extra, value, source):
    done = _chimera(tmp_path, data, *extra, launch=launch)
    assert done.returncode == 0, done.stderr
    record = _record(tmp_path)
    assert record.precision == Precision(value=value, source=source, requested="auto" if not extra else "fp32",
                                         accelerate_launch=launch)
    assert record.config.train.precision == value  # the record alone reruns it at this precision
    assert record.env.precision == value and record.env.mixed_precision == "no"


@needs_avx2_only
@pytest.mark.parametrize("how", [("--precision", "bf16"), ("--set", "train.precision=bf16")])
def test_bf16_on_a_cpu_without_native_bf16_is_refused_in_one_line(tmp_path, data, how):
    _refused(_chimera(tmp_path, data, *how), tmp_path, "has no native bf16 (its flags lack avx512_bf16 and amx_bf16")


@needs_avx2_only
def test_accelerates_bf16_launch_setting_is_honoured_so_refused_on_this_cpu(tmp_path, data):
    _refused(_chimera(tmp_path, data, launch="bf16"), tmp_path, "$ACCELERATE_MIXED_PRECISION=bf16 (set by accelerate")


def test_fp16_from_accelerate_is_refused_on_cpu(tmp_path, data):
    _refused(_chimera(tmp_path, data, launch="fp16"), tmp_path, "precision fp16 on cpu")


@needs_avx2_only
def test_matrix_refuses_an_illegal_precision_before_training_any_cell(tmp_path, data):
    _refused(_chimera(tmp_path, data, "--precision", "bf16", command="matrix"), tmp_path, "no native bf16")


def test_precision_flag_and_set_that_disagree_are_refused(tmp_path, data):
    _refused(_chimera(tmp_path, data, "--precision", "fp32", "--set", "train.precision=bf16"), tmp_path, "disagree")


@needs_avx2_only
def test_accelerate_launch_mixed_precision_bf16_reaches_the_run(tmp_path, data):
    """`accelerate launch --mixed_precision bf16 -m chimera train ...`: the launcher's setting is what the run
    decides on (on this CPU, a refusal naming it; accelerate then exits 1 with its own report)."""
    done = _chimera(tmp_path, data, accelerate_launch=("--cpu", "--num_processes", "1", "--num_machines", "1",
                                                       "--mixed_precision", "bf16", "--dynamo_backend", "no"))
    assert done.returncode != 0
    assert "chimera: error: $ACCELERATE_MIXED_PRECISION=bf16 (set by accelerate launch" in done.stderr
    assert not list(tmp_path.rglob("record.json"))


def test_accelerate_launch_mixed_precision_no_is_recorded_as_its_choice(tmp_path, data):
    done = _chimera(tmp_path, data, accelerate_launch=("--cpu", "--num_processes", "1", "--num_machines", "1",
                                                       "--mixed_precision", "no", "--dynamo_backend", "no"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert _record(tmp_path).precision.source == "accelerate"
