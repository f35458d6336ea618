"""The layering is checked, not hoped for: what reads records (doctor, report, gates) never imports
torch, the trainer or the model, and the CLI's front door loads none of them to parse its arguments."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

CHIMERA = Path(__file__).resolve().parents[2] / "chimera"
# Records in, meaning out (analysis) and results in, verdict out (gates); STYLE.md's dependency arrows.
READERS = ["doctor", "doctor_checks", "leakage_scan", "report", "report_figures", "time_to_target", "bands",
           "bench_gate", "bench_memory", "records", "fileio", "paths"]
FORBIDDEN = ("torch", "accelerate", "chimera.train", "chimera.model")


def _imports(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file, deferred imports inside functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names if node.module == "chimera")
    return names


@pytest.mark.parametrize("module", READERS)
def test_readers_of_records_never_import_torch_the_trainer_or_the_model(module):
    bad = sorted(name for name in _imports(CHIMERA / f"{module}.py")
                 if any(name == f or name.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"chimera/{module}.py imports {bad}"


def test_importing_the_cli_and_every_reader_loads_no_torch():
    code = ("import importlib, json, sys\n"
            f"for m in {['chimera.cli', *(f'chimera.{m}' for m in READERS)]!r}:\n"
            "    importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    loaded = set(json.loads(done.stdout))
    assert not {"torch", "accelerate", "chimera.train", "chimera.model"} & loaded
