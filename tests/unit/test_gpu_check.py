"""scripts/gpu_check.sh, the one command for a lent GPU, run here on the CPU with the tiny budget so it
cannot rot: an offline kit (--prepare --no-download: WordNet only, nothing fetched), then one results
folder with the environment, per-precision benchmarks, a run per native precision and a determinism check."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chimera.records.bench_report import load_bench_report
from chimera.records.store import load_record
from tests.helpers import quiet_env, write_synthetic_ag_news

pytestmark = pytest.mark.slow  # runs the GPU check script end to end (minutes)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def _script(*args: str) -> subprocess.CompletedProcess:
    env = quiet_env(PYTHON=sys.executable)
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    if not Path("/usr/share/wordnet/data.noun").exists():
        pytest.skip("WordNet for the kit comes from /usr/share/wordnet (apt wordnet-base), not installed here")
    root = tmp_path_factory.mktemp("gpu_check")
    kit, out = root / "kit", root / "out"
    prepared = _script("--prepare", "--no-download", "--kit", str(kit))
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    with zipfile.ZipFile(kit / "nltk_data/corpora/wordnet.zip") as wordnet:  # 11 MB to carry, not 36
        assert "wordnet/lexnames" in wordnet.namelist()
    assert not (kit / "nltk_data/corpora/wordnet").exists()
    requirements = (kit / "requirements.txt").read_text()
    assert "datasets==" in requirements and "nltk==" in requirements and "torch==" not in requirements
    done = _script("--device", "cpu", "--budget", "tiny", "--kit", str(kit), "--out", str(out),
                   "--data-dir", str(write_synthetic_ag_news(root / "data")))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_the_summary_has_every_step_ok_and_says_why_a_precision_was_skipped(results):
    summary = (results / "summary.md").read_text()
    native = json.loads((results / "environment.json").read_text())["native_precisions"]
    assert "FAILED" not in summary
    for step in ("benchmarks", *(f"run-{p}" for p in native), f"determinism-{native[-1]}"):
        assert f"ok      {step}" in summary
    if "bf16" not in native:
        assert "skipped bf16: precision bf16: this CPU" in summary


def test_benchmarks_are_recorded_per_precision_with_the_peer(results):
    bench = load_bench_report(results / "bench.json")
    names = {b.name: b.precision for b in bench.benchmarks}
    assert names["test_calibration_gemm[fp32]"] == "fp32"
    assert names["test_train_step[fp32-fixed/dense]"] == "fp32"
    assert names["test_peer_bert_step[fp32-fixed/dense]"] == "fp32"
    assert bench.machine_info["chimera"]["precisions"][0] == "fp32"
    assert bench.session.calibration_gemm["dtype"] == "fp32"  # the session block (bench/machine.py)
    assert all(b.memory.measured_alone for b in bench.benchmarks)  # every benchmark measured its own peak
    assert (results / "bench.md").read_text().count("test_") >= 3


def test_each_native_precision_ran_and_the_rerun_was_identical(results):
    for folder in (results / "runs").iterdir():
        record = load_record(folder / "fixed-dense-ci-s0")  # validated as it loads
        assert record.precision.value == folder.name and record.precision.source == "config"
    assert "identical" in (results / "logs").glob("determinism-*.log").__next__().read_text()


def test_bad_arguments_exit_2():
    assert _script("--device", "tpu").returncode == 2
    assert _script().returncode == 2


def test_only_takes_pinned_packages_and_names_a_wrong_one(tmp_path):
    """--only writes just those pins (downloaded --no-deps for a lent machine); a name without a pin is refused."""
    refused = _script("--prepare", "--no-download", "--kit", str(tmp_path), "--only", "datasets,no-such-package")
    assert refused.returncode == 2 and "--only datasets,no-such-package" in refused.stderr
    wordnet = tmp_path / "nltk_data" / "corpora"
    wordnet.mkdir(parents=True)
    (wordnet / "wordnet.zip").write_bytes(b"")  # as if prepared before: this test touches no WordNet
    taken = _script("--prepare", "--no-download", "--kit", str(tmp_path), "--only", "datasets,nltk", "--data-dir",
                    str(tmp_path / "none"))
    assert taken.returncode == 0, taken.stderr
    pins = (tmp_path / "requirements.txt").read_text().split()
    assert [pin.split("==")[0] for pin in pins] == ["datasets", "nltk"]
