"""The CLI is declared once, in chimera/commands.py: the parser, the handlers, the old spellings and the exit codes
all come from that table, and the defaults it states are the libraries' own."""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from chimera import cli, commands
from chimera.api import summary_line
from chimera.commands import COMMANDS, RENAMED, leaves
from chimera.errors import ChimeraError
from tests.unit.record_factory import minimal_record


def test_names_are_unique_and_a_default_subcommand_exists():
    assert len({c.name for c in COMMANDS}) == len(COMMANDS)
    for command in COMMANDS:
        subs = [sub.name for sub in command.subcommands]
        assert len(set(subs)) == len(subs) and (not command.default or command.default in subs), command.name
    for name, command in leaves().items():
        flags = [flag for argument in command.arguments for flag in argument.flags]
        assert len(set(flags)) == len(flags), name
    assert set(RENAMED).isdisjoint(c.name for c in COMMANDS) and set(RENAMED.values()) <= set(leaves())


def test_nothing_imports_the_cli_and_the_table_imports_no_handler():
    from tests.unit.test_import_cycles import import_graph

    graph = import_graph()
    assert {module for module, targets in graph.items() if "chimera.cli" in targets} == {"chimera.__main__"}
    assert graph["chimera.commands"] <= {"chimera", "chimera.fileio"}  # reading the table loads nothing else
    assert not {module for module, targets in graph.items() if "chimera.commands" in targets} - {"chimera.cli"}


@pytest.mark.parametrize("name", sorted(leaves()))
def test_every_handler_names_a_function_of_an_existing_module(name):
    module, _, function = leaves()[name].handler.partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_the_table_states_the_libraries_own_defaults():
    from chimera import config, handlers
    from chimera.analysis import leakage_scan
    from chimera.gates import bands, bench_gate
    from chimera.history import command as history

    assert commands.SPEED_THRESHOLD == bench_gate.DEFAULT_THRESHOLD
    assert commands.MIN_SEEDS == bands.MIN_SEEDS and commands.BANDS_DIR == bands.BANDS_DIR.name
    assert commands.HISTORY_STORE == str(history.DEFAULT_STORE) and commands.HISTORY_ENV == history.HISTORY_ENV
    assert commands.DEVICES == config.DEVICES
    assert commands.DATA_ENV == handlers.DATA_ENV == leakage_scan.DATA_ENV


def test_the_tables_command_is_declared_with_check_and_write():
    assert leaves()["tables check"].handler == "chimera.handlers:run_tables_check"
    assert leaves()["tables write"].handler == "chimera.handlers:run_tables_write"


def test_tables_check_prints_each_problem_and_fails_write_prints_the_tables_written(monkeypatch, capsys):
    """Against a stand-in for chimera.analysis.doc_tables (written elsewhere): the repository root goes in."""
    roots = []
    fake = types.SimpleNamespace(check_tables=lambda root: roots.append(root) or ["README.md: table x differs"],
                                 write_tables=lambda root: roots.append(root) or ["full-results"])
    monkeypatch.setitem(sys.modules, "chimera.analysis.doc_tables", fake)
    assert cli.main(["tables", "check"]) == 1 and capsys.readouterr().out == "README.md: table x differs\n"
    assert cli.main(["tables", "write"]) == 0 and capsys.readouterr().out == "full-results\n"
    assert roots == [Path(commands.__file__).resolve().parents[1]] * 2 and (roots[0] / "pyproject.toml").is_file()


def test_history_options_before_and_after_its_subcommand():
    parse = cli.build_parser().parse_args
    assert parse(["history"]).command == "history show" and parse(["history"]).store is None
    assert parse(["history", "--store", "s", "show"]).store == Path("s")  # kept: not reset by the subcommand
    assert parse(["history", "show", "--store", "t"]).store == Path("t")
    assert parse(["history", "--threshold", "0.3", "add", "x"]).command == "history add"


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_an_old_name_runs_the_new_command_and_says_so_in_one_line(old, new, tmp_path, capsys):
    empty = str(tmp_path)  # no record.json under it: the handler's own one-line error
    assert cli.build_parser().parse_args([old, empty]).command == new
    assert cli.main([*new.split(), empty]) == 2
    expected = capsys.readouterr().err
    assert cli.main([old, empty]) == 2
    note, *rest = capsys.readouterr().err.splitlines(keepends=True)
    assert note == f"chimera: `{old}` is now `{new}`; the old name goes in the next release\n"
    assert "".join(rest) == expected


@pytest.mark.parametrize(("raised", "code", "said"), [
    (ChimeraError("bad.json: not a record"), 2, "chimera: error: bad.json: not a record\n"),
    (KeyboardInterrupt(), 130, "chimera: interrupted\n"),
    (None, 1, ""),  # a failed run or check: the handler's own code, passed through
])
def test_exit_codes(raised, code, said, monkeypatch, capsys):
    def run(args):
        if raised is not None:
            raise raised
        return 1

    monkeypatch.setattr(cli, "handler", lambda command: run)
    assert cli.main(["env"]) == code and capsys.readouterr().err == said


def test_the_summary_line_says_n_a_for_a_metric_not_measured_and_keeps_a_zero_loss(tmp_path):
    record = minimal_record()
    record = replace(record, cell="fixed/dense", final_metrics=replace(
        record.final_metrics, clean_train_loss=0.0, val_loss=0.25, val_acc=None, test_acc=0.0))
    line = summary_line(record, tmp_path / "run")
    assert "clean train loss 0.0000, val loss 0.2500, val acc n/a, test acc 0.000 ->" in line
    assert line.startswith("fixed/dense: completed at step 10;") and line.endswith(str(tmp_path / "run/record.json"))
