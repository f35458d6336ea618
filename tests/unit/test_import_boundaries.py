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
# Records in, meaning out (analysis/), results in, verdict out (gates/), results over time (history/), all over
# records/: analysis and gates import records, never train/ or model/. Every module of those packages is
# checked, new ones included.
READER_PACKAGES = ("analysis", "gates", "records", "history")
READERS = sorted([f"{p.parent.name}.{p.stem}" for package in READER_PACKAGES
                  for p in (CHIMERA / package).glob("*.py") if p.stem != "__init__"] + ["fileio"])
FORBIDDEN = ("torch", "accelerate", "chimera.train", "chimera.model", "chimera.reproduce", "chimera.cli")
# Records sit below analysis and gates: they never import either (nor the readers each other's verdicts).
LOWER_THAN = {"records": ("chimera.analysis", "chimera.gates"), "gates": ("chimera.analysis",)}


# The bottom of the arrows. A record's config *is* the resolved RunConfig (chimera/records/record.py says why
# records type it with config's own classes rather than a mirror), so records may import config; config
# imports nothing but its error type; the rest of chimera is above both.
ALLOWED_CHIMERA_IMPORTS = {"config": {"chimera.errors"},
                           "records": {"chimera.config", "chimera.errors", "chimera.fileio", "chimera.records"}}


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


def _module_path(module: str) -> Path:
    return CHIMERA / (module.replace(".", "/") + ".py")


def test_the_reader_packages_hold_the_modules_the_layout_names():
    for module in ("analysis.doctor", "analysis.report", "analysis.record_diff", "gates.bands", "gates.bench_gate",
                   "records.store", "records.time_to_target"):
        assert module in READERS


@pytest.mark.parametrize("module", READERS)
def test_readers_of_records_never_import_torch_the_trainer_or_the_model(module):
    forbidden = FORBIDDEN + LOWER_THAN.get(module.split(".")[0], ())
    bad = sorted(name for name in _imports(_module_path(module))
                 if any(name == f or name.startswith(f + ".") for f in forbidden))
    assert not bad, f"chimera/{module.replace('.', '/')}.py imports {bad}"


@pytest.mark.parametrize("package", ALLOWED_CHIMERA_IMPORTS)
def test_config_and_records_import_only_what_sits_below_them(package):
    paths = [CHIMERA / f"{package}.py"] if (CHIMERA / f"{package}.py").exists() else \
        sorted((CHIMERA / package).glob("*.py"))
    allowed = ALLOWED_CHIMERA_IMPORTS[package]
    bad = {f"{path.relative_to(CHIMERA.parent)}: {name}" for path in paths for name in _imports(path)
           if name.startswith("chimera") and not any(name == a or name.startswith(a + ".") for a in allowed)}
    assert not bad, sorted(bad)


def test_the_library_never_imports_the_benchmarks_or_the_scripts():
    """bench/ and scripts/ sit above chimera/ (they import it): the docs' tables render in chimera/analysis/."""
    bad = {f"{path.relative_to(CHIMERA.parent)}: {name}" for path in sorted(CHIMERA.rglob("*.py"))
           for name in _imports(path) if name.split(".")[0] in ("bench", "scripts", "tests")}
    assert not bad, sorted(bad)


def test_importing_the_cli_and_every_reader_loads_no_torch():
    code = ("import importlib, json, sys\n"
            f"for m in {['chimera.cli', *(f'chimera.{m}' for m in READERS)]!r}:\n"
            "    importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    loaded = set(json.loads(done.stdout))
    assert not {"torch", "accelerate", "chimera.train", "chimera.model"} & loaded
