"""The doctor turns the troubleshooting guide into checks: each finding fires on the curve it describes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from chimera import cli
from chimera.analysis.doctor import Thresholds, diagnose, doctor_main, run_doctor
from chimera.analysis.leakage_scan import (
    duplicate_rows,
    fallback_normalise,
    rescan,
    resolve_data_dir,
    subsets_for_record,
)
from chimera.config import DataConfig, ModelConfig
from chimera.errors import ChimeraError
from chimera.records.record import Event, ResumeInfo, RunRecord, TokenStats
from chimera.records.store import validate_record, write_record
from tests.unit.record_factory import change_config, moe_layer, replaced_at, run_record


def by_code(findings):
    return {f.code: f for f in findings}


def errors(findings):
    return [f for f in findings if f.severity == "error"]


def test_synthetic_records_are_schema_valid():
    for cell in ("baseline/dense", "baseline/moe", "fixed/dense", "fixed/moe"):
        validate_record(run_record(cell).to_json())


def test_memorising_curve_is_a_memorisation_error():
    found = by_code(diagnose(run_record("baseline/dense")))
    assert found["memorisation"].severity == "error"
    evidence = found["memorisation"].evidence
    assert evidence["min_clean_train_loss"] < 0.1 and evidence["val_rise"] > 0.1
    assert found["overfitting"].severity == "warning"
    assert found["overfitting"].evidence["val_loss_min_step"] == evidence["val_loss_min_step"]


def test_healthy_curve_has_no_error():
    findings = diagnose(run_record("fixed/dense"))
    assert errors(findings) == []
    assert "memorisation" not in by_code(findings)


def test_low_train_loss_without_a_val_rise_is_only_a_warning():
    record = run_record("fixed/dense")
    record = replace(record, curves=[replace(p, clean_train=replace(p.clean_train, loss=p.clean_train.loss * 0.1))
                                     for p in record.curves])  # memorised, but val loss still falls
    found = by_code(diagnose(record))
    assert found["possible_memorisation"].severity == "warning"
    assert errors(diagnose(record)) == []


def test_val_loss_zero_with_injected_overlap_is_suspect_leakage_with_the_overlap_count():
    record = run_record("fixed/dense")
    record = replace(record, curves=[replace(p, clean_train=replace(p.clean_train, loss=0.001), val_loss=0.0)
                                     for p in record.curves])
    shared = [f"Shared headline number {i} about markets and rates today" for i in range(3)]
    subsets = {"train": [f"Train-only story {i} on sports and weather" for i in range(20)] + shared,
               "val": [f"Val-only report {i} of science news" for i in range(10)] + shared,
               "test": ["A completely unrelated test sentence here"]}
    found = by_code(diagnose(record, subsets=subsets))
    leak = found["suspect_leakage"]
    assert leak.severity == "error"
    assert leak.evidence["exact_train_val"] == 3
    assert leak.evidence["exact_train_test"] == 0 and leak.evidence["exact_val_test"] == 0
    assert len(leak.evidence["examples"]) == 3
    assert "memorisation" not in found  # val loss 0 is no evidence of overfitting


def test_leakage_rescan_finds_near_duplicates_and_says_so_when_it_cannot_run(monkeypatch, tmp_path):
    story = ("Oil prices rose on Tuesday as traders weighed the new OPEC supply cuts agreed in Vienna "
             "against signs of weaker demand from China and a stronger dollar, analysts said")
    first = [story, "Team wins the cup final after extra time"]
    second = [story.replace("the new OPEC", "new OPEC") + ".",  # one word and the punctuation differ: near
              "  " + story.upper(),  # the same text up to case and whitespace: exact
              "Shares fell in Tokyo after the central bank kept rates on hold"]
    exact, near = duplicate_rows(first, second, normalise=fallback_normalise, jaccard=0.8)
    assert exact == [1] and near == [0]
    record = run_record("fixed/dense")
    record = replace(record, curves=replaced_at(record.curves, -1, val_loss=0.0),
                     data=replace(record.data, source=str(tmp_path / "gone")))
    monkeypatch.delenv("CHIMERA_DATA_DIR", raising=False)
    leak = by_code(diagnose(record))["suspect_leakage"]
    assert leak.severity == "error" and leak.evidence["rescan"].startswith("not run")


def test_nan_event_and_null_loss_are_errors():
    record = run_record("fixed/dense")
    record = replace(record, events=[*record.events, Event(step=200, kind="non_finite", detail="loss nan")])
    assert by_code(diagnose(record))["non_finite"].evidence["non_finite_events"] == 1
    record = run_record("fixed/dense")
    record = replace(record, curves=replaced_at(record.curves, 5, val_loss=None))
    found = by_code(diagnose(record))["non_finite"]
    assert found.severity == "error" and found.evidence["first_step"] == record.curves[5].step
    failed = replace(run_record("fixed/dense"), status="failed",
                     error="TrainingDiverged: non-finite loss (nan) at step 7")
    assert by_code(diagnose(failed))["non_finite"].evidence["failed_non_finite"] is True


def test_failed_run_is_an_error_and_an_interrupted_one_a_warning():
    record = replace(run_record("fixed/dense"), status="failed", error="OSError: disk full")
    failed = by_code(diagnose(record))
    assert failed["run_failed"].severity == "error"
    assert failed["run_failed"].evidence["error"] == "OSError: disk full"
    resume = ResumeInfo(resumable_from_step=200, command="--resume r")
    interrupted = replace(run_record("fixed/dense"), status="interrupted", resume=resume)
    found = by_code(diagnose(interrupted))["run_interrupted"]
    assert found.severity == "warning" and "--resume r" in found.fix


def test_grad_norm_spike_above_ten_times_the_median_is_a_warning():
    record = run_record("fixed/dense")
    assert "grad_spike" not in by_code(diagnose(record))
    record = replace(record, curves=replaced_at(record.curves, 7, grad_norm=40.0))
    spike = by_code(diagnose(record))["grad_spike"]
    assert spike.severity == "warning"
    assert spike.evidence["spikes"] == 1 and spike.evidence["first_spike_step"] == record.curves[7].step


def test_moe_collapse_and_drops_are_flagged():
    record = run_record("fixed/moe")
    assert "moe_collapse" not in by_code(diagnose(record))
    record = replace(record, curves=replaced_at(record.curves, -1, moe=[moe_layer(0, [0.48, 0.48, 0.02, 0.02]),
                                                                        moe_layer(1, [0.97, 0.01, 0.01, 0.01])]))
    collapse = by_code(diagnose(record))["moe_collapse"]
    assert collapse.evidence["layer"] == 1 and collapse.evidence["expert"] == 0
    assert collapse.evidence["max_token_share"] == pytest.approx(1.94)  # top-2: each token reaches 2 experts
    record = replace(record, curves=replaced_at(record.curves, -1, moe=[moe_layer(0, [0.25] * 4, dropped=0.3)]))
    assert by_code(diagnose(record))["moe_drops"].evidence["dropped_fraction"] == 0.3


def test_lr_zero_before_the_end_of_a_decaying_schedule_is_a_warning():
    record = change_config(run_record("fixed/dense"), train={"schedule": "cosine", "max_steps": 10_000})
    assert by_code(diagnose(record))["lr_schedule"].severity == "info"
    record = replace(record, curves=replaced_at(record.curves, 4, lr=0.0))
    assert by_code(diagnose(record))["lr_schedule"].severity == "warning"


def test_warmup_that_never_ramps_is_a_warning():
    record = change_config(run_record("fixed/dense"), train={"warmup_steps": 100})  # lr at steps 25-75 equals the peak
    found = by_code(diagnose(record))["lr_schedule"]
    # the info finding's title says "warmup steps" too: only the severity tells the two apart
    assert found.severity == "warning" and "reaches the peak inside the 100-step warmup" in found.title


def test_tokenisation_and_capacity_thresholds():
    record = run_record("fixed/dense")
    val_stats = TokenStats(unk_rate=0.2, truncation_rate=0.7, mean_tokens=20.0)
    record = replace(record, data=replace(record.data, token_stats={**record.data.token_stats, "val": val_stats}),
                     params=replace(record.params, total=2_000_000, non_embedding=1_000_000))
    found = by_code(diagnose(record))
    assert found["tokenisation"].severity == "warning"
    assert found["tokenisation"].evidence["val_unk_rate"] == 0.2
    assert found["capacity"].severity == "warning"
    assert found["capacity"].evidence["non_embedding_params_per_sample"] == pytest.approx(1_000_000 / 512)
    lenient = Thresholds(max_params_per_sample=10_000)
    assert by_code(diagnose(record, thresholds=lenient))["capacity"].severity == "info"


def test_regularisation_audit_warns_when_nothing_is_on_and_the_data_is_memorised():
    record = run_record("baseline/dense")
    assert by_code(diagnose(record))["regularisation"].severity == "info"
    record = change_config(record, model={"dropout": 0.0}, train={"weight_decay": 0.0})
    assert by_code(diagnose(record))["regularisation"].severity == "warning"


def test_doctor_main_exits_1_on_an_error_and_0_otherwise(tmp_path):
    write_record(run_record("baseline/dense"), tmp_path / "bad")
    write_record(run_record("fixed/dense"), tmp_path / "good")
    text = io.StringIO()
    assert doctor_main([tmp_path / "bad"], out=text) == 1
    assert "ERROR" in text.getvalue() and "memorisation" in text.getvalue() and "fix:" in text.getvalue()
    assert doctor_main([tmp_path / "good" / "record.json"], out=io.StringIO()) == 0
    assert doctor_main([tmp_path], out=io.StringIO()) == 1  # a folder: every record below it


def test_doctor_json_output_parses(tmp_path):
    write_record(run_record("baseline/moe"), tmp_path / "run")
    out = io.StringIO()
    assert doctor_main([tmp_path], as_json=True, out=out) == 1
    payload = json.loads(out.getvalue())
    assert payload["errors"] >= 1
    (entry,) = payload["records"]
    assert entry["cell"] == "baseline/moe"
    codes = {f["code"]: f for f in entry["findings"]}
    assert codes["memorisation"]["severity"] == "error"
    assert isinstance(codes["memorisation"]["evidence"]["val_rise"], float)


def test_cli_adapter_parses_paths_json_and_data_dir(tmp_path, capsys):
    write_record(run_record("fixed/moe"), tmp_path / "run")
    args = cli.build_parser().parse_args(["doctor", str(tmp_path / "run"), "--json", "--data-dir", str(tmp_path)])
    assert run_doctor(args) == 0
    assert json.loads(capsys.readouterr().out)["errors"] == 0


def test_doctor_and_report_import_neither_training_code_nor_torch():
    code = ("import sys, chimera.analysis.doctor, chimera.analysis.report; "
            "print([m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith(('chimera.train', "
            "'chimera.model', 'chimera.data'))])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def from_source(record: RunRecord, source: str) -> RunRecord:
    return replace(record, data=replace(record.data, source=source))


def test_rescan_data_dir_comes_from_the_flag_then_the_record_then_the_environment(tmp_path, monkeypatch):
    record = run_record("fixed/dense")
    monkeypatch.delenv("CHIMERA_DATA_DIR", raising=False)
    with pytest.raises(ChimeraError, match="--data-dir"):
        resolve_data_dir(record, tmp_path / "missing")
    record = from_source(record, str(tmp_path))
    assert resolve_data_dir(record, None) == tmp_path
    record = from_source(record, "/elsewhere/ag_news")
    with pytest.raises(ChimeraError, match="CHIMERA_DATA_DIR"):
        resolve_data_dir(record, None)
    monkeypatch.setenv("CHIMERA_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(record, None) == tmp_path
    record = from_source(record, "hub:fancyzhx/ag_news")
    monkeypatch.delenv("CHIMERA_DATA_DIR")
    assert resolve_data_dir(record, None) is None


@pytest.mark.slow  # reads CSVs through the data module (datasets)
def test_rescan_re_derives_the_runs_subsets_and_finds_near_duplicates_the_split_guard_missed(tmp_path):
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(500)]
    stories = [" ".join(rng.choice(vocab, 30)) for _ in range(64)]
    edited = [t.rsplit(" ", 1)[0] + " edited" for t in stories]  # the same story, last word changed
    for split, texts in (("train", stories), ("test", edited)):
        rows = "".join(f"{text},{i % 4}\n" for i, text in enumerate(texts))
        (tmp_path / f"{split}.csv").write_text("text,label\n" + rows)
    record = change_config(run_record("fixed/dense"), data=DataConfig(
        train_samples=16, val_samples=16, test_samples=0, max_length=16, vocab_size=128, train_pool="all"))
    record = from_source(record, str(tmp_path))
    subsets, _ = subsets_for_record(record, None)
    record = replace(record, data=replace(record.data, fingerprints={
        name: getattr(subsets, name).fingerprint() for name in ("train", "val", "clean_train", "test")}))
    evidence = rescan(record)
    assert evidence["subsets_match_record_fingerprints"] is True
    assert [evidence[f"exact_{pair}"] for pair in ("train_val", "train_test", "val_test")] == [0, 0, 0]
    assert evidence["near_train_val"] == 0
    assert evidence["near_train_test"] == 16 and evidence["near_val_test"] == 16
    assert evidence["examples"][0].startswith("near train/test: ")


def test_a_finished_run_that_never_reached_its_lowest_target_is_told_so():
    record = run_record("fixed/dense")
    assert "target_not_reached" not in by_code(diagnose(record))
    record = replace(record, time_to_target=[
        replace(entry, reached=False, step=None, samples=None, train_s=None, wall_s=None, value=None)
        for entry in record.time_to_target])
    finding = by_code(diagnose(record))["target_not_reached"]
    assert finding.severity == "warning" and finding.evidence["lowest_target"] == 0.75
    assert finding.evidence["best_value"] == pytest.approx(max(p.val_acc for p in record.curves))


def _reference(val_acc: float, **data_changes) -> RunRecord:
    reference = run_record("fixed/dense", seed=3)
    reference = replace(reference, cell="reference/bow", run_id="reference-bow-ci-s3",
                        final_metrics=replace(reference.final_metrics, val_acc=val_acc))
    return change_config(reference, cell="reference/bow", model=ModelConfig(arch="bag_of_ngrams", d_model=64),
                         data=data_changes)


def test_a_transformer_below_the_linear_reference_on_the_same_rows_is_warned():
    record = run_record("fixed/dense")
    acc = record.final_metrics.val_acc
    finding = by_code(diagnose(record, references=[_reference(acc + 0.05)]))["below_reference"]
    assert finding.severity == "warning" and "a linear model on the same rows does better" in finding.title
    assert finding.evidence["reference_val_acc"] == pytest.approx(acc + 0.05)
    assert "below_reference" not in by_code(diagnose(record, references=[_reference(acc - 0.05)]))
    other_rows = _reference(acc + 0.05, train_samples=4096)
    assert "below_reference" not in by_code(diagnose(record, references=[other_rows]))
    reference = _reference(0.99)
    assert "below_reference" not in by_code(diagnose(reference, references=[reference]))


def test_doctor_main_holds_every_transformer_record_against_the_references_beside_it(tmp_path):
    record = run_record("fixed/dense")
    write_record(record, tmp_path / "fixed-dense-ci-s0")
    write_record(_reference(record.final_metrics.val_acc + 0.05), tmp_path / "reference-bow-ci-s3")
    out = io.StringIO()
    doctor_main([tmp_path], as_json=True, out=out)
    payload = json.loads(out.getvalue())
    codes = {r["cell"]: {f["code"] for f in r["findings"]} for r in payload["records"]}
    assert "below_reference" in codes["fixed/dense"] and "below_reference" not in codes["reference/bow"]
