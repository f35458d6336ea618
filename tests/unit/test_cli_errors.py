"""Every bad input the CLI can see gets exit code 2 and one line naming the problem, never a traceback."""

from __future__ import annotations

import argparse
import re

import pytest

from tests.helpers import run_chimera

GOOD = ["train", "--cell", "fixed/dense", "--profile", "ci", "--quiet", "--set", "data.train_pool=all"]  # made-up rows


def _csv(path, rows, header="text,label"):
    path.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (path / f"{split}.csv").write_text("\n".join([header, *rows]) + "\n")
    return path


def synthetic_rows(n: int = 64) -> list[str]:
    words = ["alpha", "beta", "gamma", "delta"]
    return [f'"{words[i % 4]} item {i} story",{i % 4}' for i in range(n)]


def bad_inputs(tmp_path):
    ok_dir = _csv(tmp_path / "ok", synthetic_rows())
    bad_label = _csv(tmp_path / "badlabel", [*synthetic_rows(8), '"some text",7'])
    wrong_cols = _csv(tmp_path / "cols", [*synthetic_rows(8), '"some text",1,extra'])
    empty_text = _csv(tmp_path / "empty", [*synthetic_rows(8), '"   ",1'])
    return {
        "unknown cell": (["train", "--cell", "fixed/sparse", "--profile", "ci"], "unknown cell"),
        "unknown profile": (["train", "--cell", "fixed/dense", "--profile", "nightly"], "unknown profile"),
        "unknown --set key": ([*GOOD, "--set", "train.lrr=1"], "unknown key 'lrr'"),
        "ill-typed --set": ([*GOOD, "--set", "train.max_steps=many"], "max_steps must be int"),
        "dropout out of range": ([*GOOD, "--set", "model.dropout=1.0"], "model.dropout"),
        "lr not positive": ([*GOOD, "--set", "train.lr=0"], "train.lr"),
        "patience below 1": ([*GOOD, "--set", "train.patience=0"], "train.patience"),
        "missing data dir": ([*GOOD, "--data-dir", str(tmp_path / "nowhere")], "no such folder"),
        "train_samples larger than split": ([*GOOD, "--data-dir", str(ok_dir), "--out", str(tmp_path / "o1"),
                                             "--set", "data.train_samples=10000"], "data.train_samples"),
        "label out of range": ([*GOOD, "--data-dir", str(bad_label), "--out", str(tmp_path / "o2")], "train.csv"),
        "wrong column count": ([*GOOD, "--data-dir", str(wrong_cols), "--out", str(tmp_path / "o3")], "train.csv"),
        "empty text": ([*GOOD, "--data-dir", str(empty_text), "--out", str(tmp_path / "o4")], "train.csv"),
    }


CASES = ["unknown cell", "unknown profile", "unknown --set key", "ill-typed --set", "dropout out of range",
         "lr not positive", "patience below 1", "missing data dir", "train_samples larger than split",
         "label out of range", "wrong column count", "empty text"]


@pytest.mark.slow  # a fresh interpreter per case (~10 s each); test_bad_input.py tries such inputs in-process
@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line(tmp_path, case):
    args, fragment = bad_inputs(tmp_path)[case]
    result = run_chimera(*args, check=False, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert fragment in lines[0]
    assert not list(tmp_path.rglob("record.json")), "a rejected input must not leave a record"


def _commands() -> dict:
    """Every command of the table, by its full name (not a hand list: a new command is covered without editing)."""
    from chimera.commands import leaves

    return leaves()


def _parser_of(name: str) -> argparse.ArgumentParser:
    from chimera.cli import build_parser

    parser = build_parser()
    for word in name.split():
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[word]
    return parser


def test_help_lists_every_command_and_group_but_no_old_name():
    from chimera.commands import COMMANDS, RENAMED

    def names(*words: str) -> set[str]:  # the commands a --help lists, one per line under COMMAND
        return set(re.findall(r"^    (\S+)(?: |$)", run_chimera(*words, "--help").stdout, flags=re.M))

    listed = names()
    assert len(_commands()) >= 13
    assert {command.name for command in COMMANDS} == listed and not set(RENAMED) & listed
    for command in COMMANDS:
        if command.subcommands:
            assert {sub.name for sub in command.subcommands} == names(command.name), command.name


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_command_explains_its_options(command, capsys):
    from chimera.cli import main

    with pytest.raises(SystemExit) as exited:  # in this process: fifteen interpreters would cost ~45 s
        main([*command.split(), "--help"])
    out, err = capsys.readouterr()
    assert exited.value.code == 0 and out.startswith(f"usage: chimera {command}") and not err
    for action in _parser_of(command)._actions:
        for flag in action.option_strings:
            assert flag in out, f"chimera {command} --help does not mention {flag}"
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            assert (action.metavar or action.dest) in out
