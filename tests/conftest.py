"""Shared fixtures. Integration tests train on the real AG News copy named by $CHIMERA_DATA_DIR.

Without data they skip with a reason, except under CHIMERA_REQUIRE_DATA=1 (CI), where missing data
is a failure: a skipped check must never read as a pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import copy_records, load_cell, run_chimera  # noqa: F401  (re-exported for tests)


def _require_data() -> Path:
    raw = os.environ.get("CHIMERA_DATA_DIR")
    if raw and (Path(raw) / "train.csv").exists():
        return Path(raw)
    reason = f"real AG News not found (CHIMERA_DATA_DIR={raw!r})"
    if os.environ.get("CHIMERA_REQUIRE_DATA") == "1":
        pytest.fail(f"{reason} but CHIMERA_REQUIRE_DATA=1")
    pytest.skip(reason)


@pytest.fixture
def restore_torch_state():
    """`chimera train` in the test's process switches torch to deterministic algorithms: put things back."""
    import torch  # deferred: most tests never need it

    deterministic, precision = torch.are_deterministic_algorithms_enabled(), torch.get_float32_matmul_precision()
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_float32_matmul_precision(precision)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require_data()


@pytest.fixture(scope="session")
def ci_runs(data_dir, tmp_path_factory) -> Path:
    """The ci-profile matrix (every cell, seed 0), trained once per test session in a fresh process.

    Set CHIMERA_TEST_RUNS to a folder holding such a matrix to reuse it while developing. CHIMERA_KEEP_RUNS=DIR
    copies its records to DIR as soon as they exist, before any test judges them (.ci/run keeps them as evidence).
    """
    reuse = os.environ.get("CHIMERA_TEST_RUNS")
    if reuse:
        return Path(reuse)
    out = tmp_path_factory.mktemp("ci_runs")
    try:
        run_chimera("matrix", "--profile", "ci", "--out", str(out), "--data-dir", str(data_dir), "--quiet")
    finally:  # a failed cell's record is evidence too
        if os.environ.get("CHIMERA_KEEP_RUNS"):
            copy_records(out, Path(os.environ["CHIMERA_KEEP_RUNS"]))
    return out


@pytest.fixture(scope="session")
def data_slice(data_dir, tmp_path_factory) -> Path:
    """The first 3,000 training and 1,000 test rows of the real AG News copy, for runs that need real text
    but not all of it (loads in a tenth of the time). Written to a temporary folder, never committed."""
    import csv

    out = tmp_path_factory.mktemp("ag_news_slice")
    for name, rows in (("train.csv", 3000), ("test.csv", 1000)):
        with open(data_dir / name, encoding="utf-8", newline="") as source, \
                open(out / name, "w", encoding="utf-8", newline="") as target:
            writer = csv.writer(target)
            for i, row in enumerate(csv.reader(source)):
                if i > rows:
                    break
                writer.writerow(row)
    return out


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """One line above the result line when integration tests skipped: `N passed` alone would read as a pass."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "integration" in getattr(r, "keywords", {})]
    if skipped:
        reason = str(skipped[0].longrepr[-1]) if isinstance(skipped[0].longrepr, tuple) else "see -rs above"
        terminalreporter.write_line(f"INTEGRATION TESTS SKIPPED: {len(skipped)} ({reason}); run `make test` "
                                    "with the data folder (CHIMERA_DATA_DIR) to run them", yellow=True, bold=True)
