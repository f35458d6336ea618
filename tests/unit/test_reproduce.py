"""`chimera reproduce`: the record diff is exact, ignores wall-clock, and explains with the environment."""

from __future__ import annotations

import copy
import io
import json
import math
from dataclasses import replace

import pytest

from chimera.analysis.record_diff import diff_records, format_diff
from chimera.errors import ChimeraError
from chimera.records.record import Event, ResumeInfo, RunRecord
from chimera.reproduce import reproduce_main
from tests.unit.record_factory import change_config, replaced_at, run_record


@pytest.fixture
def old() -> RunRecord:
    return run_record("fixed/moe", evaluations=4)


def test_a_record_equals_itself(old):
    diff = diff_records(old, copy.deepcopy(old))
    assert diff.identical and diff.metrics == diff.inputs == diff.environment == []
    assert format_diff(diff, old_name="a", new_name="b").startswith("identical")


def test_wall_clock_and_identity_fields_are_not_results(old):
    slower = replace(old.final_metrics, wall_s=old.final_metrics.wall_s + 10, train_samples_per_s=1.0)
    new = replace(old, timing=replaced_at(old.timing, 0, step_time_s=old.timing[0].step_time_s * 2),
                  final_metrics=slower, run_id="other", created_at="2030-01-01T00:00:00+00:00",
                  resume=ResumeInfo(resumed_from_step=5), events=[Event(step=5, kind="resumed")])
    assert diff_records(old, new).identical


def test_time_to_target_steps_must_reproduce_but_its_seconds_need_not(old):
    new = replace(old, time_to_target=[replace(e, wall_s=e.wall_s + 5.0, train_s=e.train_s + 3.0) if e.reached else e
                                       for e in old.time_to_target])
    assert diff_records(old, new).identical
    reached = next(i for i, e in enumerate(new.time_to_target) if e.reached)
    new = replace(new, time_to_target=replaced_at(new.time_to_target, reached,
                                                  step=new.time_to_target[reached].step + 25))
    assert [d.where for d in diff_records(old, new).metrics] == [f"time_to_target[{reached}].step"]


def test_one_ulp_in_one_curve_point_is_a_difference_showing_both_values(old):
    value = old.curves[2].val_loss
    new = replace(old, curves=replaced_at(old.curves, 2, val_loss=math.nextafter(value, math.inf)))
    diff = diff_records(old, new)
    assert [d.where for d in diff.metrics] == [f"curves[step={old.curves[2].step}].val_loss"]
    text = format_diff(diff, old_name="a", new_name="b")
    assert repr(value) in text and repr(math.nextafter(value, math.inf)) in text


def test_missing_evaluations_nested_moe_stats_and_final_metrics_are_compared(old):
    shares = list(old.curves[0].moe[0].tokens_per_expert)
    shares[1] += 0.125
    curves = replaced_at(old.curves[:-1], 0, moe=replaced_at(old.curves[0].moe, 0, tokens_per_expert=shares))
    new = replace(old, curves=curves, final_metrics=replace(old.final_metrics, test_acc=0.5), status="stopped_early")
    where = {d.where for d in diff_records(old, new).metrics}
    assert f"curves[step={old.curves[-1].step}]" in where
    assert f"curves[step={old.curves[0].step}].moe[0].tokens_per_expert[1]" in where
    assert {"final_metrics.test_acc", "status"} <= where


def test_a_bool_is_not_a_number(old):
    old = replace(old, final_metrics=replace(old.final_metrics, stopped_early=1))
    new = replace(old, final_metrics=replace(old.final_metrics, stopped_early=True))
    assert [d.where for d in diff_records(old, new).metrics] == ["final_metrics.stopped_early"]


def test_environment_and_input_differences_explain_but_do_not_count_as_metrics(old):
    new = replace(old, env=replace(old.env, torch="2.12.0", torch_num_threads=8), world_size=2,
                  data=replace(old.data, tokenizer_sha256="f" * 64))
    diff = diff_records(old, new)
    assert diff.identical
    assert {d.where for d in diff.environment} == {"env.torch", "env.torch_num_threads", "world_size"}
    assert [d.where for d in diff.inputs] == ["data.tokenizer_sha256"]
    new = replace(new, curves=replaced_at(new.curves, 0, train_loss=new.curves[0].train_loss + 1.0))
    text = format_diff(diff_records(old, new), old_name="a", new_name="b")
    assert "1 metric(s) differ" in text and "could explain it" in text and "env.torch: '2.13.0' -> '2.12.0'" in text


def _write(tmp_path, record: RunRecord):
    path = tmp_path / "given" / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record.to_json()))
    return path


def test_an_interrupted_record_is_not_reproduced(tmp_path, old):
    path = _write(tmp_path, replace(old, status="interrupted"))
    with pytest.raises(ChimeraError, match="interrupted"):
        reproduce_main(path, out_dir=tmp_path / "out", data_dir=None, out=io.StringIO())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field, value, fragment", [
    ("cell", "../../etc/x", "schema"),  # the schema's cell pattern: one /, no dots
    ("profile", "../../../tmp/escape", "not usable as a run folder name"),
])
def test_a_record_cannot_send_the_rerun_outside_the_output_folder(tmp_path, old, field, value, fragment):
    record = change_config(replace(old, **{field: value}), **{field: value})
    with pytest.raises(ChimeraError, match=fragment):
        reproduce_main(_write(tmp_path, record), out_dir=tmp_path / "out", data_dir=None, out=io.StringIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["given"]


def test_a_record_whose_config_disagrees_with_its_header_is_refused(tmp_path, old):
    record = change_config(old, seed=3)
    with pytest.raises(ChimeraError, match="seed"):
        reproduce_main(_write(tmp_path, record), out_dir=tmp_path / "out", data_dir=None, out=io.StringIO())
