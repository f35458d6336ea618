"""Plain helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_chimera(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process, as a user would."""
    result = subprocess.run([sys.executable, "-m", "chimera", *args], capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"chimera {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def load_cell(runs: Path, cell: str) -> dict:
    matches = sorted(runs.glob(f"{cell.replace('/', '-')}-*/record.json"))
    assert matches, f"no record for {cell} under {runs}"
    return json.loads(matches[0].read_text())
