"""The one typed reader of the ablation summary (chimera/records/ablation_summary.py): the published file reads
back byte for byte, what the report writes is what the reader gives back, and a malformed file is one line
naming the file and the key."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from chimera.analysis.ablation_effects import ablation_tables, summary
from chimera.analysis.doctor_checks import ABLATION_SUMMARY
from chimera.errors import ChimeraError
from chimera.records.ablation_summary import AblationSummary, load_ablation_summary
from tests.unit.test_ablation_effects import family

REPO = Path(__file__).resolve().parents[2]


def test_the_published_summary_reads_back_to_the_same_bytes():
    text = ABLATION_SUMMARY.read_text(encoding="utf-8")
    published = load_ablation_summary(ABLATION_SUMMARY)
    assert json.dumps(published.to_json(), indent=2) + "\n" == text
    assert AblationSummary.from_json(json.loads(text)) == published
    leave_out = published.table("without")
    assert leave_out.start == "fixed/dense" and len(leave_out.seeds) >= 3
    assert set(leave_out.effects) == {"width", "depth", "ff-width", "dropout", "weight-decay", "lr",
                                      "label-smoothing", "schedule", "augmentation"}
    for by_metric in leave_out.effects.values():
        assert {"test_acc", "gap", "best_val_loss", "clean_train_loss"} <= set(by_metric)
        assert all(e.n + e.unpaired == len(leave_out.seeds) for e in by_metric.values())
    assert published.table("with").start == "baseline/dense"


def test_what_the_report_writes_is_what_the_reader_gives_back(tmp_path):
    written = summary(ablation_tables(family()))
    (path := tmp_path / "ablation.json").write_text(json.dumps(written.to_json(), indent=2) + "\n")
    read = load_ablation_summary(path)
    assert read == written
    dropout = read.table("without").effects["dropout"]["test_acc"]
    assert dropout.n == 3 and dropout.mean == pytest.approx(0.10) and not dropout.within_noise
    assert read.table("elsewhere") is None


def _published() -> dict:
    return json.loads(ABLATION_SUMMARY.read_text(encoding="utf-8"))


def _table(data: dict) -> dict:
    return data["tables"][0]


CORRUPT = {
    "no tables": (lambda d: d.pop("tables"), "tables is None, expected a list"),
    "runs as text": (lambda d: d.update(runs="sixty"), "runs is 'sixty', expected a whole number"),
    "a table that is no object": (lambda d: d["tables"].append(3), "tables[2] is 3, expected an object"),
    "seeds as text": (lambda d: _table(d).update(seeds="0-2"), "tables[0].seeds is '0-2', expected a list of seeds"),
    "a mean as text": (lambda d: _table(d)["effects"]["width"]["test_acc"].update(mean="small"),
                       "tables[0].effects.width.test_acc.mean is 'small', expected a number or null"),
    "within_noise missing": (lambda d: _table(d)["effects"]["lr"]["gap"].pop("within_noise"),
                             "tables[0].effects.lr.gap.within_noise is None, expected true or false"),
    "an effect list": (lambda d: _table(d)["effects"].update(depth=[1]),
                       "tables[0].effects.depth is [1], expected an object"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_a_malformed_summary_is_one_chimera_error_naming_the_file_and_the_key(tmp_path, case):
    mutate, key = CORRUPT[case]
    data = _published()
    mutate(data)
    (path := tmp_path / "ablation-ci.json").write_text(json.dumps(data))
    with pytest.raises(ChimeraError) as raised:
        load_ablation_summary(path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: not an ablation summary") and key in message, message
    assert "make ablation" in message


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]"])
def test_unreadable_json_or_json_that_is_no_object_is_one_line(tmp_path, content):
    (path := tmp_path / "a.json").write_text(content)
    with pytest.raises(ChimeraError, match=r"a\.json: (not a readable JSON ablation summary|not an ablation summary)"):
        load_ablation_summary(path)


def test_an_absent_file_names_itself(tmp_path):
    with pytest.raises(ChimeraError, match=r"absent\.json: no such ablation summary"):
        load_ablation_summary(tmp_path / "absent.json")


# A hand-written reader of the shape: code outside the owner that names the file and indexes its keys.
SHAPE_KEYS = {"tables", "effects", "within_noise"}


def test_no_module_but_the_reader_parses_an_ablation_summary_by_hand():
    offenders = []
    owner = REPO / "chimera" / "records" / "ablation_summary.py"
    for path in sorted([*(REPO / "chimera").rglob("*.py"), *(REPO / "scripts").rglob("*.py")]):
        if path == owner:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            key = node.slice if isinstance(node, ast.Subscript) else \
                node.args[0] if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                                 and node.func.attr == "get" and node.args) else None
            if isinstance(key, ast.Constant) and key.value in SHAPE_KEYS:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, f"read ablation summaries through chimera.records.ablation_summary: {offenders}"
