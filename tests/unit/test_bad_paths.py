"""Every path argument of every command, given a bad path of each kind, exits 2 with one line naming
the argument and the path, and creates nothing. The cases are generated from `chimera.paths`' table,
so a new path argument is covered by adding it there.

Permissions are simulated through `paths._allowed` (root, which runs CI here, passes every real
permission check, so chmod alone would test nothing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chimera import cli, paths
from chimera.paths import PATH_ARGUMENTS, PathArgument

PREFIX = {"train": ["train", "--cell", "fixed/dense"], "bench": ["bench", "compare"], "bands": ["bands", "build"]}
# Commands whose options belong to the parent parser: they go before the sub-command, then the positionals.
SUBCOMMAND_AFTER_OPTIONS = {"history": ["add"]}


def _faults(argument: PathArgument) -> list[str]:
    kind = argument.kind
    faults = ["wrong kind"]
    if not kind.write or argument.must_exist:
        faults += ["missing", "unreadable"]
    if kind.write:
        faults += ["unwritable", "under a file"]
    return faults


CASES = [(command, argument.dest, fault) for command, arguments in PATH_ARGUMENTS.items()
         for argument in arguments for fault in _faults(argument)]


def _good(root: Path, argument: PathArgument) -> Path:
    """A path that passes the check: an existing file or folder to read, a new one to write."""
    path = root / "good" / argument.dest
    if argument.kind.write and not argument.must_exist:
        return path
    if argument.kind.folder is False:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    else:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _bad(root: Path, argument: PathArgument, fault: str, denied: set[Path]) -> Path:
    bad = root / "bad"
    bad.mkdir(exist_ok=True)
    if fault == "missing":
        return bad / "absent"
    if fault == "wrong kind":
        if argument.kind.folder is None:
            os.mkfifo(bad / "fifo")
            return bad / "fifo"
        if argument.kind.folder:
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
    if argument.must_exist:
        path = _good(bad, argument)
        denied.add(path)
        return path
    denied.add(bad)
    return bad / "new"


def _argv(command: str, values: dict[str, Path]) -> list[str]:
    positionals = [str(values[a.dest]) for a in PATH_ARGUMENTS[command] if not a.flag.startswith("--")]
    options = [arg for a in PATH_ARGUMENTS[command] if a.flag.startswith("--") for arg in (a.flag, str(values[a.dest]))]
    if command in SUBCOMMAND_AFTER_OPTIONS:
        return [command, *options, *SUBCOMMAND_AFTER_OPTIONS[command], *positionals]
    return [*PREFIX.get(command, [command]), *positionals, *options]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(("command", "dest", "fault"), CASES, ids=["-".join(c) for c in CASES])
def test_a_bad_path_argument_exits_2_with_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch,
                                                                        command, dest, fault):
    arguments = {a.dest: a for a in PATH_ARGUMENTS[command]}
    denied: set[Path] = set()
    values = {name: _good(tmp_path, a) for name, a in arguments.items()}
    values[dest] = _bad(tmp_path, arguments[dest], fault, denied)
    monkeypatch.setattr(paths, "_allowed", lambda path, mode: Path(path) not in denied)
    monkeypatch.chdir(tmp_path)  # relative defaults (runs/, report/) would land here
    before = _tree(tmp_path)

    code = cli.main(_argv(command, values))

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert arguments[dest].flag in lines[0] and str(values[dest]) in lines[0]
    assert _tree(tmp_path) == before, "a refused command must leave nothing behind"


def test_every_path_argument_of_the_parser_is_in_the_table():
    """A new Path-typed argument must be declared in chimera.paths, or it goes unchecked."""
    import argparse

    def walk(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from walk(sub, name or sub_name)
            elif action.type is Path or action.dest in {"data_dir"}:
                yield name, action.dest

    declared = {(command, a.dest) for command, arguments in PATH_ARGUMENTS.items() for a in arguments}
    found = set(walk(cli.build_parser(), None))
    assert ("train", "out") in found and ("bench", "baseline") in found  # the walk sees nested commands
    assert found <= declared
