"""Hostile input, tried systematically: every case gets a one-line ChimeraError naming the file, line or
key (exit code 2 through the CLI), never a traceback, never a partial record.

Each case is a parametrize id, so `pytest tests/unit/test_bad_input.py -v` lists everything tried.
Data cases run through the loader and through `chimera train` (in this process: a subprocess per case
would spend ~5 s starting torch); the CLI subprocess path itself is covered by test_cli_errors.py.
`hypothesis` fuzzes the CSV reader and the `--set` parser.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chimera import cli
from chimera.config import RunConfig, apply_overrides, parse_assignment
from chimera.data.dataset import load_ag_news
from chimera.data.subsets import TextSplit
from chimera.errors import ChimeraError

HUB = [f'"{w} item {i} story",{i % 4}' for i, w in enumerate(["alpha", "beta", "gamma", "delta"] * 10)]
ORIGINAL = [f'{i % 4 + 1},"title {i}","{w} item {i} story"' for i, w in enumerate(["alpha", "beta"] * 20)]


def _hub(*rows: str, head: tuple[str, ...] = HUB[:10]) -> str:
    return "\n".join(["text,label", *head, *rows]) + "\n"


def _original(*rows: str) -> str:
    return "\n".join([*ORIGINAL[:10], *rows]) + "\n"


# id: (train.csv content, a fragment the message must contain). test.csv is valid in the same layout.
DATA_CASES = {
    "truncated: unterminated quote": (_hub('"cut off in the mid'), "line 12: a quoted field is never closed"),
    "unterminated quote after a multi-line field": (_hub('"two\nlines",1', '"cut off'),
                                                     "line 14: a quoted field is never closed"),
    "truncated: last row without a label": (_hub('"no label here"'), "line 12: expected 2 columns, found 1"),
    "extra column": (_hub('"text",1,extra'), "line 12: expected 2 columns, found 3"),
    "missing column, original layout": (_original('3,"title only"'), "line 11: expected 3 columns"),
    "label 0, original layout (1-4)": (_original('0,"t","d"'), "line 11: label 0 is out of range"),
    "label 5, original layout": (_original('5,"t","d"'), "line 11: label 5 is out of range"),
    "label x, original layout": (_original('x,"t","d"'), "line 11: label 'x' is not an integer"),
    "label 5, hub layout (0-3)": (_hub('"t",5'), "line 12: label 5 is out of range"),
    "label -1, hub layout": (_hub('"t",-1'), "line 12: label -1 is out of range"),
    "label x, hub layout": (_hub('"t",x'), "line 12: label 'x' is not an integer"),
    "label 1.5, hub layout": (_hub('"t",1.5'), "line 12: label '1.5' is not an integer"),
    "missing label": (_hub('"t",'), "line 12: missing label"),
    "empty text": (_hub('"",1'), "line 12: empty text"),
    "whitespace-only text": (_hub('"  \t  ",2'), "line 12: empty text"),
    "markup-only text": (_hub('"&lt;b&gt;&lt;/b&gt;",2'), "line 12: empty text"),
    "invalid UTF-8 in a row": (_hub().encode() + b'"caf\xe9",1\n', "line 12: not valid UTF-8"),
    "invalid UTF-8 on line 1": (b"\xff\xfe" + _hub().encode(), "line 1: not valid UTF-8"),
    "header only": ("text,label\n", "line 2: no data rows"),
    "empty file": ("", "line 1: file is empty"),
    "whitespace-only file": ("  \n\n", "line 1: file is empty"),
    "unknown header": ("title,body,label,extra\n" + "a,b,1,c\n", "line 1: expected a text,label header"),
}


def _write_split(folder: Path, name: str, content: str | bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")


def _data_dir(tmp_path: Path, train: str | bytes) -> Path:
    folder = tmp_path / "data"
    _write_split(folder, "train.csv", train)
    original = isinstance(train, str) and train[:1].isdigit()
    _write_split(folder, "test.csv", "\n".join(ORIGINAL) + "\n" if original else _hub(head=tuple(HUB)))
    return folder


def _one_line(message: str) -> str:
    assert "\n" not in message.strip() and "Traceback" not in message, message
    return message


def _cli(tmp_path: Path, capsys, *args: str) -> str:
    """Run the CLI in this process; return its one stderr line after checking exit code 2 and no record."""
    code = cli.main([*args, "--out", str(tmp_path / "runs")] if args[0] == "train" else list(args))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("chimera: error: ") and "Traceback" not in err, err
    assert not list(tmp_path.rglob("record.json")), "a rejected input must not leave a record"
    return lines[0]


# data.train_pool=all: these folders are made up, so the packaged manifest's rows are not in them
TRAIN = ("train", "--cell", "baseline/dense", "--profile", "ci", "--device", "cpu", "--quiet",
         "--set", "data.train_pool=all")


@pytest.mark.parametrize("case", DATA_CASES)
def test_the_loader_names_file_and_line(tmp_path, case):
    content, fragment = DATA_CASES[case]
    folder = _data_dir(tmp_path, content)
    with pytest.raises(ChimeraError) as caught:
        load_ag_news(folder)
    message = _one_line(str(caught.value))
    assert str(folder / "train.csv") in message and fragment in message


@pytest.mark.parametrize("case", ["truncated: unterminated quote", "label x, original layout", "header only",
                                  "invalid UTF-8 in a row", "whitespace-only text"])
def test_the_cli_turns_bad_data_into_exit_2(tmp_path, capsys, restore_torch_state, case):
    content, fragment = DATA_CASES[case]
    line = _cli(tmp_path, capsys, *TRAIN, "--data-dir", str(_data_dir(tmp_path, content)))
    assert "train.csv" in line and fragment in line


def test_an_empty_folder_names_what_it_expected(tmp_path, capsys, restore_torch_state):
    (tmp_path / "empty").mkdir()
    line = _cli(tmp_path, capsys, *TRAIN, "--data-dir", str(tmp_path / "empty"))
    assert "no train file; expected train.csv" in line and "found: nothing" in line


def test_two_train_files_are_ambiguous(tmp_path):
    folder = _data_dir(tmp_path, _hub())
    _write_split(folder, "train.jsonl", '{"text": "a", "label": 1}\n')
    with pytest.raises(ChimeraError, match="several train files"):
        load_ag_news(folder)


def test_duplicate_rows_shrink_the_pool_and_the_sizes_say_so(tmp_path, capsys, restore_torch_state):
    """Duplicates load (the leakage guard drops them before sampling); asking for more rows than are
    left after it is a config error naming the key."""
    folder = _data_dir(tmp_path, _hub(*[HUB[0]] * 200))
    assert len(load_ag_news(folder)["train"]) == 210
    line = _cli(tmp_path, capsys, *TRAIN, "--data-dir", str(folder), "--set", "data.train_samples=8",
                "--set", "data.val_samples=64")
    assert "data.val_samples (64) is larger than the train-split rows left after" in line


def test_a_one_megabyte_text_loads(tmp_path):
    folder = _data_dir(tmp_path, _hub('"' + "word " * 200_000 + '",1'))
    assert len(load_ag_news(folder)["train"].texts[-1]) == len("word " * 200_000) - 1


def test_a_one_megabyte_text_on_line_1_of_the_original_layout_loads(tmp_path):
    splits = load_ag_news(_data_dir(tmp_path, '1,"title","' + "word " * 200_000 + '"\n' + _original()))
    assert splits["train"].texts[0] == "title " + ("word " * 200_000).strip()


def test_a_bare_carriage_return_on_line_1_is_a_chimera_error(tmp_path):
    with pytest.raises(ChimeraError, match=r"train\.csv: line 1: .*quote fields that contain line breaks"):
        load_ag_news(_data_dir(tmp_path, "\r,0\n" + _hub()))


# --- the matrix file ----------------------------------------------------------------------------------

MATRIX_CASES = {
    "not TOML": ("[cells\n", "not valid TOML"),
    "unknown top-level key": ('[cellz."a/b"]\n', "unknown key 'cellz'"),
    "unknown section in a cell": ('[cells."a/b"]\noptimiser = { lr = 1 }\n[profiles.ci]\n', "unknown key 'optimiser'"),
    "unknown field": ('[cells."a/b"]\ntrain = { lrr = 1e-3 }\n[profiles.ci]\n', "unknown key 'lrr'"),
    "wrong type": ('[cells."a/b"]\ntrain = { max_steps = "many" }\n[profiles.ci]\n', "max_steps must be int"),
    "bool for a number": ('[cells."a/b"]\ntrain = { lr = true }\n[profiles.ci]\n', "lr must be float"),
    "section not a table": ('[cells."a/b"]\ntrain = 3\n[profiles.ci]\n', "expected a table, got int"),
    "override without cells": ('[cells."a/b"]\n[profiles.ci]\n[[profiles.ci.override]]\ntrain = {}\n',
                               'needs cells = "pattern"'),
    "value out of range": ('[cells."a/b"]\nmodel = { dropout = 1.5 }\n[profiles.ci]\n', "model.dropout must be in"),
    "no cells": ("[profiles.ci]\n", "needs at least one"),
}


@pytest.mark.parametrize("case", MATRIX_CASES)
def test_a_bad_matrix_file_names_the_key(tmp_path, capsys, case):
    text, fragment = MATRIX_CASES[case]
    (tmp_path / "m.toml").write_text(text)
    line = _cli(tmp_path, capsys, "train", "--cell", "a/b", "--profile", "ci", "--matrix", str(tmp_path / "m.toml"))
    assert fragment in line and "m.toml" in line


def test_a_missing_matrix_file(tmp_path, capsys):
    line = _cli(tmp_path, capsys, "matrix", "--matrix", str(tmp_path / "nowhere.toml"))
    assert "--matrix" in line and "nowhere.toml: no such file" in line


# --- --set ---------------------------------------------------------------------------------------------

MARKER = Path(tempfile.gettempdir()) / "chimera-set-injection-ran"
INJECTIONS = {
    "function call": (f"train.lr=__import__('pathlib').Path('{MARKER}').touch()", "is not a literal"),
    "attribute walk": ("train.lr=(1).__class__.__bases__", "is not a literal"),
    "lambda": ("train.lr=lambda: 1", "is not a literal"),
    "shell metacharacters": ("model.ffn=moe; touch /tmp/x", "model.ffn must be one of"),  # a string field: text
    "command substitution": ("model.ffn=$(id)", "model.ffn must be one of"),
    "shell metacharacters in a number": ("train.lr=1; touch /tmp/x", "is not a literal"),
    "exponent bomb": ("train.max_steps=9**9**9**9", "is not a literal"),
    "deep nesting": ("train.betas=" + "[" * 10_000 + "]" * 10_000, "is not a literal"),
    "dunder section": ("__class__.x=1", "unknown section '__class__'"),
    "dunder key": ("train.__init__=1", "unknown key '__init__'"),
    "no key": ("train=1", "expected section.key=value"),
    "no value separator": ("train.lr", "expected section.key=value"),
    "string for an int": ("train.max_steps='10'", "max_steps must be int"),
    "bool for a float": ("train.lr=True", "lr must be float"),
    "bytes": ("train.lr=b'1'", "lr must be float"),
    "set for a pair": ("train.betas={0.9, 0.99}", "betas must be tuple"),
    "wrong arity": ("train.betas=(0.9,)", "betas must be tuple"),
    "unknown choice": ("train.schedule=exponential", "train.schedule must be one of"),
}


@pytest.mark.parametrize("case", INJECTIONS)
def test_set_values_are_data_never_code(tmp_path, capsys, case):
    assignment, fragment = INJECTIONS[case]
    line = _cli(tmp_path, capsys, *TRAIN, "--set", assignment)
    assert fragment in line
    assert not MARKER.exists()


@pytest.mark.parametrize("value", ["1e309", "-1e309", "float('nan')"])
def test_a_non_finite_number_is_refused_up_front(value):
    with pytest.raises(ChimeraError, match="must be a finite number|is not a literal"):
        apply_overrides(RunConfig(cell="a/b", profile="p"), [f"train.lr={value}"])
    with pytest.raises(ChimeraError, match="--set model: dropout must be a finite number"):
        apply_overrides(RunConfig(cell="a/b", profile="p"), ["model.dropout=1e309"])


# --- fuzzing ---------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIELD = st.lists(st.sampled_from([*'ab ,"\n\r\\;&#\t\x00é€', "amp;", "#39;", "\ufeff", "\\n"]), max_size=8).map("".join)
LABEL = st.one_of(st.integers(-2, 6).map(str), FIELD)


def _loads_or_refuses(train: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "train.csv").write_bytes(train)
        (folder / "test.csv").write_text(_hub(head=tuple(HUB)), encoding="utf-8")
        try:
            splits = load_ag_news(folder)
        except ChimeraError as exc:
            _one_line(str(exc))
            return
    train_split = splits["train"]
    assert isinstance(train_split, TextSplit) and len(train_split) > 0
    assert all(label in range(4) for label in train_split.labels)  # 0-based, whatever the layout
    assert all(text and text == " ".join(text.split()) for text in train_split.texts)  # cleaned, non-empty


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes_load_or_raise_a_chimera_error(raw):
    _loads_or_refuses(raw)


@FUZZ
@given(st.lists(st.lists(FIELD, min_size=1, max_size=4).flatmap(
    lambda cells: LABEL.map(lambda label: [*cells, label])), max_size=8), st.booleans())
def test_fuzz_csv_rows_load_or_raise_a_chimera_error(rows, with_header):
    lines = ["text,label"] if with_header else []
    lines += [",".join(cells) for cells in rows]
    _loads_or_refuses("\n".join(lines).encode("utf-8"))


LITERAL_TYPES = (int, float, complex, str, bytes, bool, type(None), tuple, list, dict, set, frozenset)


@FUZZ
@given(st.one_of(st.text(max_size=40),
                 st.tuples(st.sampled_from(["train.lr", "model.ffn", "train.betas", "data.max_length"]),
                           st.text(alphabet=st.sampled_from(list("()[]{}._'\"=+-*/ ,:0123456789eEjxlambdaimport")),
                                   max_size=30)).map("=".join)))
def test_fuzz_set_is_parsed_as_data_or_refused(text):
    try:
        _, _, value = parse_assignment(text)
    except ChimeraError as exc:
        _one_line(str(exc))  # the text is quoted with repr, so even a newline in it stays on one line
        return
    assert isinstance(value, LITERAL_TYPES)
    try:
        apply_overrides(RunConfig(cell="a/b", profile="p"), [text])
    except ChimeraError:
        pass
    assert not MARKER.exists()
