"""Subcommands import what they use and no more: `chimera train` (help or a real run) never loads
matplotlib, the analysis, gates or history packages, and at most 30 chimera modules; the CLI's parser
loads no torch. Checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import SYNTHETIC_TINY, quiet_env, sets, write_synthetic_ag_news

PROBE = ("import json, sys\nfrom chimera import cli\ntry:\n    code = cli.main(sys.argv[1:])\nexcept SystemExit as e:\n"
         "    code = e.code\nprint(json.dumps({'code': code, 'modules': sorted(sys.modules)}))")


def _modules_after(*args: str) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=quiet_env(),
                          timeout=300)
    result = json.loads(done.stdout.splitlines()[-1])
    return result["code"], set(result["modules"])


def test_train_help_loads_neither_matplotlib_nor_torch():
    code, modules = _modules_after("train", "--help")
    assert code == 0
    assert "matplotlib" not in modules and "chimera.analysis.report_figures" not in modules
    assert "torch" not in modules


# What a run needs and no more: the reading side of the suite (doctor, report, gates, history) stays unloaded.
TRAIN_NEVER_LOADS = ("chimera.analysis", "chimera.gates", "chimera.history", "matplotlib")
TRAIN_MODULE_BUDGET = 30


@pytest.mark.slow  # trains in a subprocess
def test_a_real_train_run_loads_only_the_training_path(tmp_path):
    data = write_synthetic_ag_news(tmp_path / "data")
    code, modules = _modules_after("train", "--cell", "fixed/dense", "--profile", "ci", "--device", "cpu",
                                   "--quiet", "--out", str(tmp_path / "runs"), "--data-dir", str(data),
                                   "--cache-dir", str(tmp_path / "cache"), *sets(*SYNTHETIC_TINY))
    assert code == 0 and "torch" in modules
    loaded = sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in TRAIN_NEVER_LOADS))
    assert not loaded, f"chimera train loaded {loaded}"
    chimera = sorted(m for m in modules if m == "chimera" or m.startswith("chimera."))
    assert len(chimera) <= TRAIN_MODULE_BUDGET, f"{len(chimera)} chimera modules: {chimera}"
