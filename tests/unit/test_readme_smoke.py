"""Every command the README shows has a smoke run in CI (scripts/readme_smoke.py), and a smoke step fails
on what a user would call a crash. The runs themselves happen in .ci/run (`make smoke`), not here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chimera.commands import RENAMED, leaves
from scripts import readme_smoke
from scripts.readme_smoke import SMOKES, Smoke, Step, chimera_commands, readme_commands, run_step, uncovered, undeclared

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
CI = (REPO / ".ci" / "run").read_text(encoding="utf-8")
MAKEFILE = (REPO / "Makefile").read_text(encoding="utf-8")


def test_every_command_the_readme_shows_has_a_smoke_entry():
    assert not uncovered(README), f"README commands with no entry in scripts/readme_smoke.py: {uncovered(README)}"


def test_every_command_an_entry_claims_to_cover_is_in_the_readme():
    shown = readme_commands(README)
    stale = {command for smoke in SMOKES for command in smoke.covers} - shown
    assert not stale, f"entries cover commands the README no longer shows: {stale}"


def test_the_readme_has_the_commands_a_user_is_told_to_run():
    shown = readme_commands(README)  # the extractor finds them, or the two tests above prove nothing
    assert {"make matrix", "make test", "make bench-cpu", "tox -e repro", "make report"} <= shown
    assert len(shown) >= 40


def test_every_chimera_command_an_entry_covers_or_runs_is_declared_in_the_command_table():
    assert not undeclared(), f"not in chimera/commands.py (or only as an old spelling): {undeclared()}"


def test_an_old_spelling_or_a_made_up_command_in_an_entry_is_caught():
    old = next(iter(RENAMED))
    entry = Smoke("x", (f"chimera {old} RUN_DIR",), (Step("$CHIMERA bands frobnicate"), Step("$CHIMERA bench")))
    assert undeclared((entry,)) == {old, "bands frobnicate", "bench"}


def _make_recipe(target: str, seen: frozenset[str] = frozenset()) -> str:
    """The recipe lines of a Makefile target, with the targets it runs through $(MAKE) or as prerequisites."""
    match = re.search(rf"^{re.escape(target)}:([^\n#]*).*\n((?:\t.*\n)*)", MAKEFILE, flags=re.M)
    if not match or target in seen:
        return ""
    inner = set(match[1].split()) | set(re.findall(r"\$\(MAKE\) (?:--\S+ )*([a-z][\w-]*)", match[2]))
    return match[2] + "".join(_make_recipe(t, seen | {target}) for t in sorted(inner))


def _run_by_the_smoke() -> set[str]:
    """The chimera commands the smoke's steps run: directly, or in the recipes of the make targets they run."""
    runs = [step.run for smoke in SMOKES for step in smoke.steps]
    targets = {t for run in runs for words in re.findall(r"\bmake ((?:[a-z][\w-]* ?)+)", run) for t in words.split()}
    return {name for text in [*runs, *map(_make_recipe, sorted(targets))] for name in chimera_commands(text)}


def test_every_declared_command_the_readme_shows_is_run_by_a_smoke_step():
    shown = {name for command in readme_commands(README) for name in chimera_commands(command)}
    assert {"train", "bands check", "bench compare", "history add", "history show"} <= shown
    assert shown <= set(leaves()), f"the README teaches commands the table lacks: {shown - set(leaves())}"
    assert not shown - _run_by_the_smoke(), f"shown in the README, run by no smoke step: {shown - _run_by_the_smoke()}"


def test_chimera_commands_are_named_as_the_table_names_them():
    assert chimera_commands("$CHIMERA history add x && .venv/bin/chimera history --store S") == {"history add",
                                                                                                "history show"}
    assert chimera_commands("chimera train\\|matrix ... --log-with T") == {"train", "matrix"}
    assert chimera_commands("chimera history [show] [--cells P]") == {"history show"}
    assert chimera_commands("accelerate launch -m chimera train --cell C") == {"train"}
    assert not chimera_commands("chimera --version; python -m chimera.gates.bench_gate; see chimera/gates/bands")


def test_only_make_test_and_the_smoke_itself_go_without_steps_and_ci_runs_both_strictly():
    unrun = [smoke for smoke in SMOKES if not smoke.steps]
    assert [smoke.covers for smoke in unrun] == [("make test", "make smoke")] and unrun[0].why_not_run
    assert re.search(r"^make test$", CI, flags=re.M)
    assert re.search(r"^make .*smoke SMOKE_ARGS=\"--strict --records \$CHIMERA_KEEP_RUNS", CI, flags=re.M)
    assert CI.index("\nmake test\n") < CI.index("smoke SMOKE_ARGS")


def test_entry_names_are_unique_and_each_step_allows_only_the_codes_it_names():
    names = [smoke.name for smoke in SMOKES]
    assert len(names) == len(set(names))
    for smoke in SMOKES:
        for step in smoke.steps:
            assert step.ok, smoke.name
            if step.ok != (0,) and 0 not in step.ok:  # a refusal must say why: its message is checked
                assert step.expect or set(step.ok) <= {130, 143}, smoke.name


def test_commands_are_found_in_code_spans_and_fenced_blocks_but_bare_tool_names_are_not():
    text = ("Run `make matrix` or `chimera doctor\nruns/ci`; needs `make` and `tensorboard`.\n"
            "```bash\nmake test   # the tests\ntox -e repro\n```\nSee `chimera/paths.py`.\n")
    assert readme_commands(text) == {"make matrix", "chimera doctor runs/ci", "make test", "tox -e repro"}


def _env(tmp_path: Path) -> dict[str, str]:
    return readme_smoke._environment(tmp_path, None, str(tmp_path))


def test_a_step_passes_on_an_allowed_exit_code_with_the_expected_text(tmp_path):
    assert run_step(Step("echo refused: no GPU; exit 2", ok=(2,), expect="no GPU"), _env(tmp_path),
                    tmp_path / "log")[0] == "ok"


@pytest.mark.parametrize("step", [
    Step("exit 3"),
    Step("python3 -c 'import json; json.loads(\"{\")' || true"),  # exit 0, but a traceback: a crash
    Step("echo something else; exit 2", ok=(2,), expect="no GPU"),
], ids=["exit-code", "traceback", "missing-reason"])
def test_a_step_fails_on_a_crash(tmp_path, step):
    verdict, why = run_step(step, _env(tmp_path), tmp_path / "log")
    assert verdict == "FAILED", why
    assert (tmp_path / "log").read_text().startswith(f"\n$ {step.run}")


def test_a_step_whose_tool_is_missing_is_skipped_not_passed(tmp_path):
    assert run_step(Step("true", needs="no-such-engine-xyz"), _env(tmp_path), tmp_path / "log")[0] == "skipped"
