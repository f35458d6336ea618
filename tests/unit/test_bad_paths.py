"""Every path argument of every command, given a bad path of each kind, exits 2 with one line naming
the argument and the path, and creates nothing. The cases are generated from the command table
(chimera/commands.py), so a new path argument is covered by declaring its kind there.

Permissions are simulated through `fileio._allowed` (root, which runs CI here, passes every real
permission check, so chmod alone would test nothing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chimera import cli, fileio
from chimera.commands import Argument, leaves

# arguments a command needs besides its paths
REQUIRED = {"train": ["--cell", "fixed/dense"], "history export": ["--format", "csv"]}
PATH_ARGUMENTS = {name: [a for a in command.arguments if a.path is not None] for name, command in leaves().items()}


def _faults(argument: Argument) -> list[str]:
    kind = argument.path
    faults = ["wrong kind"]
    if not kind.write or kind.must_exist:
        faults += ["missing", "unreadable"]
    if kind.write:
        faults += ["unwritable", "under a file"]
    return faults


CASES = [(command, argument.name, fault) for command, arguments in PATH_ARGUMENTS.items()
         for argument in arguments for fault in _faults(argument)]


def _good(root: Path, argument: Argument) -> Path:
    """A path that passes the check: an existing file or folder to read, a new one to write."""
    path = root / "good" / argument.name
    if argument.path.write and not argument.path.must_exist:
        return path
    if argument.path.folder is False:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    else:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _bad(root: Path, argument: Argument, fault: str, denied: set[Path]) -> Path:
    bad = root / "bad"
    bad.mkdir(exist_ok=True)
    if fault == "missing":
        return bad / "absent"
    if fault == "wrong kind":
        if argument.path.folder is None:
            os.mkfifo(bad / "fifo")
            return bad / "fifo"
        if argument.path.folder:
            (bad / "a-file").write_text("x")
            return bad / "a-file"
        (bad / "a-folder").mkdir()
        return bad / "a-folder"
    if fault == "under a file":
        (bad / "a-file").write_text("x")
        return bad / "a-file" / "inside"
    if fault == "unreadable":
        path = _good(bad, argument)
        denied.add(path)
        return path
    # unwritable: an existing folder that may not be written, or a new path under one
    if argument.path.must_exist:
        path = _good(bad, argument)
        denied.add(path)
        return path
    denied.add(bad)
    return bad / "new"


def _argv(command: str, values: dict[str, Path]) -> list[str]:
    positionals = [str(values[a.name]) for a in PATH_ARGUMENTS[command] if a.positional]
    options = [arg for a in PATH_ARGUMENTS[command] if not a.positional for arg in (a.flags[0], str(values[a.name]))]
    return [*command.split(), *REQUIRED.get(command, []), *positionals, *options]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(("command", "dest", "fault"), CASES, ids=["-".join(c) for c in CASES])
def test_a_bad_path_argument_exits_2_with_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch,
                                                                        command, dest, fault):
    arguments = {a.name: a for a in PATH_ARGUMENTS[command]}
    denied: set[Path] = set()
    values = {name: _good(tmp_path, a) for name, a in arguments.items()}
    values[dest] = _bad(tmp_path, arguments[dest], fault, denied)
    monkeypatch.setattr(fileio, "_allowed", lambda path, mode: Path(path) not in denied)
    monkeypatch.chdir(tmp_path)  # relative defaults (runs/, report/) would land here
    before = _tree(tmp_path)

    code = cli.main(_argv(command, values))

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert arguments[dest].shown in lines[0] and str(values[dest]) in lines[0]
    assert _tree(tmp_path) == before, "a refused command must leave nothing behind"


def test_history_options_given_before_its_subcommand_are_checked_too(tmp_path, capsys):
    """`chimera history --store S add ...`: the option belongs to the group's parser, the check to the subcommand."""
    (tmp_path / "a-file").write_text("x")
    code = cli.main(["history", "--store", str(tmp_path / "a-file" / "inside"), "add", str(tmp_path)])
    assert code == 2 and "--store" in capsys.readouterr().err


def test_every_argument_that_takes_a_path_declares_its_kind():
    """A Path-typed argument (or a --...-dir) without a kind in the table would go unchecked."""
    declared = {(name, a.name) for name, arguments in PATH_ARGUMENTS.items() for a in arguments}
    takes_a_path = {(name, a.name) for name, command in leaves().items() for a in command.arguments
                    if a.type is Path or a.name.endswith("_dir")}
    assert ("train", "out") in takes_a_path and ("bench compare", "baseline") in takes_a_path  # nested commands too
    assert takes_a_path <= declared, takes_a_path - declared
