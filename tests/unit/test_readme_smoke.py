"""Every command README.md and docs/*.md show has a smoke entry (scripts/readme_smoke.py) that runs it in CI or
says why no CI machine can, and a smoke step fails on what a user would call a crash. The runs themselves happen
in .ci/run (`make smoke`), not here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chimera.commands import RENAMED, leaves
from scripts import readme_smoke
from scripts.readme_smoke import (
    SMOKES,
    Smoke,
    Step,
    chimera_commands,
    covered,
    page_commands,
    run_step,
    shown_commands,
    uncovered,
    undeclared,
)

REPO = Path(__file__).resolve().parents[2]
SHOWN = shown_commands(REPO)
CI = (REPO / ".ci" / "run").read_text(encoding="utf-8")
# Entries without steps, each a deliberate decision: CI runs `make test` and `make smoke` itself; the rest need
# hardware, a network or minutes no CI machine has (each entry says what checks it instead).
NOT_RUN = {"test", "needs-gpus", "cuda-image", "full-record-from-the-hub", "lock-requirements"}
MAKEFILE = (REPO / "Makefile").read_text(encoding="utf-8")


def test_every_command_the_readme_and_the_docs_show_has_a_smoke_entry():
    missing = {command: SHOWN[command] for command in uncovered(SHOWN)}
    assert not missing, f"commands shown with no entry in scripts/readme_smoke.py: {missing}"


def test_every_command_an_entry_claims_to_cover_is_shown_on_a_page():
    stale = covered() - set(SHOWN)
    assert not stale, f"entries cover commands neither README.md nor docs/*.md shows: {stale}"


def test_the_pages_have_the_commands_a_user_is_told_to_run():
    readme = page_commands((REPO / "README.md").read_text(encoding="utf-8"))  # the front door's own
    assert {"make matrix", "make test", "make bench-cpu", "tox -e repro", "make report",
            "chimera tables check"} <= readme
    assert {"make ablation", "make bands", "chimera report docs/results/full"} <= set(SHOWN)  # from docs/
    assert len(SHOWN) >= 80  # the extractor finds them, or the two tests above prove nothing


def test_only_the_deliberate_few_go_without_steps_each_saying_why_and_ci_runs_the_smoke_strictly():
    unrun = {smoke.name: smoke for smoke in SMOKES if not smoke.steps}
    assert set(unrun) == NOT_RUN
    assert unrun["test"].covers == ("make test", "make smoke")
    assert all(len(smoke.why_not_run) > 60 for smoke in unrun.values())
    assert not any(smoke.why_not_run for smoke in SMOKES if smoke.steps)


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


def test_every_declared_command_a_page_shows_is_run_by_a_smoke_step():
    shown = {name for command in shown_commands() for name in chimera_commands(command)}
    assert {"train", "bands check", "bench compare", "history add", "history show"} <= shown
    assert shown <= set(leaves()), f"a page teaches commands the table lacks: {shown - set(leaves())}"
    assert not shown - _run_by_the_smoke(), f"shown on a page, run by no smoke step: {shown - _run_by_the_smoke()}"


def test_chimera_commands_are_named_as_the_table_names_them():
    assert chimera_commands("$CHIMERA history add x && .venv/bin/chimera history --store S") == {"history add",
                                                                                                "history show"}
    assert chimera_commands("chimera train\\|matrix ... --log-with T") == {"train", "matrix"}
    assert chimera_commands("chimera history [show] [--cells P]") == {"history show"}
    assert chimera_commands("accelerate launch -m chimera train --cell C") == {"train"}
    assert not chimera_commands("chimera --version; python -m chimera.gates.bench_gate; see chimera/gates/bands")
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
            "```bash\nmake test   # the tests\ntox -e repro\n```\nSee `chimera/fileio.py`.\n")
    assert page_commands(text) == {"make matrix", "chimera doctor runs/ci", "make test", "tox -e repro"}


def test_a_command_may_start_with_environment_assignments_and_continue_over_lines():
    text = ('```bash\nEXTRA_RUN_ARGS="--gpus all" DATA_DIR=d \\\n  scripts/run.sh a b   # one command\n'
            "# node 0\nFOO=1 taskset -c 0 x\n```\nSet `WANDB_MODE=offline`; run `DOCKER=podman make docker-cpu`.\n")
    assert page_commands(text) == {'EXTRA_RUN_ARGS="--gpus all" DATA_DIR=d scripts/run.sh a b',
                                   "DOCKER=podman make docker-cpu"}


def test_the_docs_pages_are_scanned_too(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("`make test`\n", encoding="utf-8")
    (tmp_path / "docs" / "a.md").write_text("`make test` and `chimera env`\n", encoding="utf-8")
    assert shown_commands(tmp_path) == {"make test": ["README.md", "docs/a.md"], "chimera env": ["docs/a.md"]}


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
