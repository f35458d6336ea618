"""Commands import what they use and no more: parsing (`--help` of any command) loads no handler and no
torch; running a command loads its own handler's module and no other command's, so `chimera train` never
loads matplotlib, the report stack, the gates or the history, and no more chimera modules than its budget. Checked in a
fresh interpreter each."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chimera.commands import leaves
from tests.helpers import SYNTHETIC_TINY, quiet_env, sets, write_synthetic_ag_news

PROBE = ("import json, sys\nfrom chimera import cli\n{before_main}codes = []\nfor argv in json.loads(sys.argv[1]):\n"
         "    try:\n        codes.append(cli.main(argv))\n    except SystemExit as e:\n        codes.append(e.code)\n"
         "print(json.dumps({{'codes': codes, 'modules': sorted(sys.modules)}}))")
HANDLER_MODULES = {command.handler.partition(":")[0] for command in leaves().values()}
READERS = ("chimera.analysis", "chimera.gates", "chimera.history", "matplotlib")


def _modules_after(*argvs: list[str], before_main: str = "") -> tuple[list[int], set[str]]:
    """Run each argv through cli.main in one fresh interpreter; the exit codes and every module loaded."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(before_main=before_main), json.dumps(argvs)],
                          capture_output=True, text=True, env=quiet_env(), timeout=300)
    result = json.loads(done.stdout.splitlines()[-1])
    return result["codes"], set(result["modules"])


def _loaded(modules: set[str], packages: tuple[str, ...]) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)}


def test_the_help_of_every_command_loads_no_handler_and_no_torch():
    codes, modules = _modules_after(["--help"], *([*name.split(), "--help"] for name in leaves()))
    assert set(codes) == {0}
    assert not modules & HANDLER_MODULES, modules & HANDLER_MODULES
    assert not _loaded(modules, (*READERS, "torch", "chimera.train", "chimera.model"))


def _argv(name: str, root) -> list[str]:
    """`chimera NAME` with its required arguments, each path one that passes its check."""
    argv = name.split()
    for argument in leaves()[name].arguments:
        if not (argument.positional or argument.required is True):
            continue
        value = "fixed/dense"  # --cell, the one required argument that is not a path
        if argument.path is not None:
            value = root / argument.name
            if argument.path.folder is False and not argument.path.write:
                value.write_text("{}")
            elif not argument.path.write or argument.path.must_exist:
                value.mkdir()
        argv += [str(value)] if argument.positional else [argument.flags[0], str(value)]
    return argv


# The handler is resolved as cli.main does it, then not run: what the dispatch itself loads.
RESOLVE_ONLY = "resolve = cli.handler\ncli.handler = lambda command: (resolve(command), lambda args: 0)[1]\n"


@pytest.mark.parametrize("name", sorted(leaves()))
def test_dispatch_loads_the_commands_own_handler_module_and_no_other_commands(name, tmp_path):
    own = leaves()[name].handler.partition(":")[0]
    [code], modules = _modules_after(_argv(name, tmp_path), before_main=RESOLVE_ONLY)
    its_own = _imported_by(own)
    assert code == 0 and own in modules
    others = (modules & HANDLER_MODULES) - its_own
    assert not others, f"chimera {name} loaded the handlers of other commands: {sorted(others)}"
    assert not _loaded(modules - its_own, ("torch", "matplotlib"))


def test_train_loads_none_of_the_readers_even_when_it_stops_early():
    [code], modules = _modules_after(["train", "--cell", "no/such"])  # the unknown cell stops it in its handler
    assert code == 2 and "chimera.api" in modules
    assert not _loaded(modules, READERS), sorted(_loaded(modules, READERS))


def _imported_by(module: str) -> set[str]:
    """Every module that importing the CLI and `module` loads."""
    code = f"import json, sys, chimera.cli, {module}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=quiet_env(), timeout=300,
                          check=True)
    return set(json.loads(done.stdout))


# chimera modules a real fixed/dense `chimera train` may load, packages included: the training path and no more
# (30 measured; MoE, the linear reference, compiled steps, trackers, ablation variants and record upgrades load
# their modules only when used)
TRAIN_MODULE_BUDGET = 30


@pytest.mark.slow  # trains in a subprocess
def test_a_real_train_run_loads_none_of_the_readers(tmp_path):
    data = write_synthetic_ag_news(tmp_path / "data")
    [code], modules = _modules_after(["train", "--cell", "fixed/dense", "--profile", "ci", "--device", "cpu",
                                      "--quiet", "--out", str(tmp_path / "runs"), "--data-dir", str(data),
                                      "--cache-dir", str(tmp_path / "cache"), *sets(*SYNTHETIC_TINY)])
    assert code == 0 and "torch" in modules
    assert not _loaded(modules, READERS), sorted(_loaded(modules, READERS))
    chimera = sorted(m for m in modules if m == "chimera" or m.startswith("chimera."))
    assert len(chimera) <= TRAIN_MODULE_BUDGET, f"{len(chimera)} chimera modules: {chimera}"
