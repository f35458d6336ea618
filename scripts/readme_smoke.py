"""Run every command README.md and docs/*.md tell a user to run, each in a short form that fails on a crash.

    python scripts/readme_smoke.py --records runs/ci-evidence/records/ci     # what CI runs (make smoke)
    python scripts/readme_smoke.py --list                                    # shown command -> smoke entry
    python scripts/readme_smoke.py --only bench-cpu history ...              # some entries only

Why: a documented command can rot while every test stays green (the time-to-quality benchmark crashed on the
typed record for a whole release because no CI step ran it). The README is the front door and docs/ holds the
rest, so both are read (PAGES). Each entry below names the commands it covers, verbatim as a page writes them,
and the shell steps that run them at toy sizes (TINY: 64 rows, one layer of width 32, 20 steps) or with tiny
benchmark rounds. A step fails on an exit code it does not allow or a Python traceback in its output; a
command this hardware cannot run (CUDA, MPS) must be refused with the message the entry names. The few
commands no CI machine can run (several GPUs, the CUDA image, re-locking the pins) have an entry that says
why instead of steps. tests/unit/test_readme_smoke.py fails when a shown command has no entry here, when
an entry covers a command no page shows, and (like this script) when an entry names a `chimera` command the
command table (chimera/commands.py) does not declare, or declares only as an old spelling.

--records: a folder of real ci-profile records (the ci matrix `make test` trains; CI keeps them in its
evidence folder): the doctor, the loss gate and the history read those, since toy runs prove nothing to
a loss gate. Scratch files go to --out (default: a temporary folder, kept). Exit 1 if any step failed,
or (with --strict, as in CI) was skipped because a tool such as the container engine is missing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from chimera.commands import COMMANDS, leaves

REPO = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "docs/*.md")  # the pages whose commands must each have an entry, relative to the root

TINY = " ".join(f"--set {kv}" for kv in (
    "data.train_samples=64", "data.val_samples=32", "data.test_samples=32", "data.max_length=16",
    "data.vocab_size=256", "model.d_model=32", "model.d_ff=64", "model.n_layers=1", "train.batch_size=16",
    "train.warmup_steps=2", "train.max_steps=20", "train.eval_every=5"))
TRAIN = "$CHIMERA train --cell fixed/dense --profile ci --data-dir $DATA --device cpu --quiet $TINY"

# A shown command is an inline code span or a line of a fenced block (backslash continuations joined) that,
# after any environment assignments (`DOCKER=podman`, `EXTRA_RUN_ARGS="--gpus all"`), starts like one of these.
# At least one argument: a bare `make` or `tensorboard` names a tool, not a command.
ENV_ASSIGNMENTS = re.compile(r"""^(?:[A-Z_][A-Z0-9_]*=(?:"[^"]*"|'[^']*'|\S+)\s+)*""")
COMMAND_START = re.compile(r"^(make|chimera|tox|pytest|python|pip|torchrun|docker|accelerate launch|tensorboard|bash|"
                           r"\.venv/bin/\S+|scripts/\S+\.(sh|py))\s+\S")
TRACEBACK = "Traceback (most recent call last)"
# `chimera` (or $CHIMERA, .venv/bin/chimera, -m chimera) as a program, then its next two words.
CHIMERA_CALL = re.compile(r"(?:^|(?<=[\s/]))(?:\$CHIMERA|chimera)(?=\s)\s+(\S+)(?:\s+(\S+))?")


@dataclass(frozen=True)
class Step:
    """One shell command, run in the repository root with SMOKE, RECORDS, DATA, TINY, VENV, PY, CHIMERA set."""

    run: str
    ok: tuple[int, ...] = (0,)  # exit codes that mean "ran as it should"
    expect: str = ""  # text the output must hold (a refusal's reason)
    needs: str = ""  # a program that must be on PATH, else the step is skipped (and --strict fails)


@dataclass(frozen=True)
class Smoke:
    name: str
    covers: tuple[str, ...]  # shown commands, exactly as their page writes them
    steps: tuple[Step, ...] = field(default_factory=tuple)
    why_not_run: str = ""  # instead of steps: why no CI machine runs it here, and what checks it instead


SMOKES: tuple[Smoke, ...] = (
    Smoke("test", ("make test", "make smoke"),
          why_not_run=".ci/run runs `make test` verbatim, then `make smoke`, which is this script"),
    # the target runs real tests: a few, since every test of this tier already ran in `make test`, a superset
    Smoke("test-fast", ("make test-fast",), (Step('make test-fast PYTEST_ARGS="-k readme_smoke"'),)),
    Smoke("setup", ("make setup",), (Step("make setup"),)),  # a no-op after `make test`: proves it stays one
    Smoke("smoke-list", ("scripts/readme_smoke.py --list",), (Step("$PY scripts/readme_smoke.py --list"),)),
    # write after a passing check must change nothing: the pages' hash before and after
    Smoke("tables", ("chimera tables check", "chimera tables write"), (
        Step("$CHIMERA tables check"),
        Step('before=$(cat README.md docs/*.md | sha256sum) && $CHIMERA tables write && '
             'test "$before" = "$(cat README.md docs/*.md | sha256sum)"'))),
    Smoke("env", ("chimera env", "chimera --version"), (Step("$CHIMERA env"), Step("$CHIMERA --version"))),
    Smoke("make-n", ("make -n TARGET",), (Step("make -n matrix", expect="chimera matrix --profile ci"),)),
    Smoke("matrix", ("make matrix", "chimera matrix", "chimera matrix --profile ci [--cells ...] [--precision P]",
                     "chimera matrix --profile ci --data-dir DATA",
                     "chimera matrix --profile ci --seeds 1 2 3 4 --data-dir DATA --out docs/results/ci-seeds"), (
        Step('make matrix RUNS=$SMOKE/runs TRAIN_ARGS="$TINY --quiet --precision fp32"'),)),
    Smoke("report", ("make report", "chimera report", "chimera report RUN_DIR --out report/"), (
        Step("make report RUNS=$SMOKE/runs REPORT=$SMOKE/report"),)),
    Smoke("doctor", ("chimera doctor", "chimera doctor RECORD\\|RUN_DIR ... [--json]",
                     ".venv/bin/chimera doctor runs/ci", "chimera doctor docs/results/ci-seeds"), (
        Step("$CHIMERA doctor $RECORDS", ok=(0, 1)),  # 1: the baseline's memorisation is an error-level finding
        Step("$CHIMERA doctor $SMOKE/runs/ci --json > $SMOKE/doctor.json", ok=(0, 1)),
        Step("$CHIMERA doctor docs/results/ci-seeds", ok=(1,), expect="memorisation"))),  # the 10 baseline runs
    Smoke("bands-check", ("chimera bands check", "chimera bands check RUN_DIR",
                          "chimera bands check docs/results/ci-seeds"), (
        Step("$CHIMERA bands check $RECORDS"), Step("$CHIMERA bands check docs/results/ci-seeds"))),
    Smoke("train", ("chimera train", "chimera train --cell fixed/dense --profile ci [--data-dir D] [--out runs/] "
                    "[--seed N] [--set train.lr=2e-4 ...] [--device auto\\|cpu\\|cuda\\|mps] "
                    "[--precision auto\\|fp32\\|bf16\\|fp16]",
                    "chimera train --cell CELL --profile full --seed S --data-dir DATA",
                    "chimera train --cell fixed/dense --profile ci",
                    "chimera train --cell fixed/dense --profile ci --set train.max_steps=100",
                    "chimera train --cell fixed/dense --profile ci --set data.train_pool=all",
                    "chimera train --device cuda",
                    "chimera train --cell fixed/dense --profile ci --set data.dataset=path/to/news --set "
                    "data.text_column=headline --set data.label_column=topic --set data.train_pool=all"), (
        Step(f"{TRAIN} --out $SMOKE/train --seed 1 --set train.lr=2e-4 --precision fp32 --log-with tensorboard"),
        # another dataset: one CSV file (its test rows carved out), read by data.dataset, not --data-dir
        Step("$CHIMERA train --cell fixed/dense --profile ci --device cpu --quiet $TINY --set "
             "data.dataset=$DATA/train.csv --set data.text_column=text --set data.label_column=label "
             "--set data.train_pool=all --out $SMOKE/own-data"),
        Step(f"{TRAIN} --out $SMOKE/train-pool-all --set data.train_pool=all"),
        # a torch without CUDA (or a host without a visible GPU) refuses in one line, never trains on the CPU
        Step(TRAIN.replace("--device cpu", "--device cuda") + " --out $SMOKE/train-cuda", ok=(2,),
             expect="--device cuda:"))),
    Smoke("torchrun", ("torchrun --nproc_per_node 2 -m chimera train --device cpu --cell fixed/dense --profile ci",
                       "torchrun --nproc_per_node 2 -m chimera train --device cpu --set train.batch_size=16 ..."), (
        Step("$VENV/bin/torchrun --nproc_per_node 2 -m chimera train --device cpu --cell fixed/dense --profile ci "
             "--data-dir $DATA --quiet $TINY --set train.batch_size=8 --out $SMOKE/torchrun"),)),
    Smoke("resume", ("chimera train ... --resume RUN_DIR",), (
        Step("$PY tests/fault_injection.py --signal TERM --at-step 13 -- train --cell fixed/dense --profile ci "
             "--data-dir $DATA --device cpu --quiet $TINY --out $SMOKE/resume", ok=(130, 143)),
        Step(f"{TRAIN} --out $SMOKE/resume --resume $SMOKE/resume/fixed-dense-ci-s0"))),
    Smoke("reproduce", ("chimera reproduce", "chimera reproduce RECORD.json",
                        "chimera reproduce runs/ci/fixed-dense-ci-s0/record.json --out runs/reproduced"), (
        Step("$CHIMERA reproduce $SMOKE/train/fixed-dense-ci-s1/record.json --out $SMOKE/reproduced --data-dir $DATA "
             "--quiet"),)),
    # two committed records of different seeds: they differ, so exit 1 is the command working
    Smoke("diff", ("chimera diff", "chimera diff A B", "chimera diff A B [--out diff/] [--tolerance REL]",
                   "chimera diff docs/results/ci-seeds/fixed-dense-ci-s0 docs/results/ci-seeds/fixed-dense-ci-s1"), (
        Step("$CHIMERA diff docs/results/ci-seeds/fixed-dense-ci-s0 docs/results/ci-seeds/fixed-dense-ci-s1 "
             "--out $SMOKE/diff --tolerance 0", ok=(1,), expect="diff: DIFFER"),
        Step("test -s $SMOKE/diff/diff.png"))),
    Smoke("trackers", ("chimera train\\|matrix ... --log-with tensorboard [mlflow ...]", "tensorboard --logdir runs/",
                       "pip install -e '.[trackers]'"), (
        Step("$VENV/bin/pip install --quiet --no-deps -e '.[trackers]'"),
        Step("$VENV/bin/tensorboard --inspect --logdir $SMOKE/train", expect="val_loss"))),  # the train entry's run
    Smoke("accelerate-launch", ("accelerate launch --mixed_precision ...",
                                "accelerate launch --config_file docker/accelerate/cpu_2proc.yaml -m chimera train "
                                "--device cpu --cell fixed/dense --profile ci"), (
        Step("$VENV/bin/accelerate launch --cpu --num_processes 1 --mixed_precision no -m chimera train "
             "--cell fixed/dense --profile ci --data-dir $DATA --quiet $TINY --out $SMOKE/launched"),
        Step("$VENV/bin/accelerate launch --config_file docker/accelerate/cpu_2proc.yaml -m chimera train --device cpu "
             "--cell fixed/dense --profile ci --data-dir $DATA --quiet $TINY --set train.batch_size=8 "
             "--out $SMOKE/launched-2proc"))),
    Smoke("needs-gpus", (
        "accelerate launch --config_file docker/accelerate/multi_gpu.yaml -m chimera train --cell fixed/dense "
        "--profile ci",
        "accelerate launch --config_file docker/accelerate/multi_node.yaml -m chimera train --cell fixed/dense "
        "--profile ci",
        "accelerate launch --config_file docker/accelerate/multi_node.yaml --machine_rank 1 -m chimera train "
        "--cell fixed/dense --profile ci",
        'docker run --rm --gpus all --ipc=host --network host -v "/path/to/ag_news:/data:ro" -v "$PWD/runs:/runs" '
        '--user "$(id -u):$(id -g)" chimera-bench:cuda accelerate launch --config_file '
        "docker/accelerate/multi_gpu.yaml -m chimera train --cell fixed/dense --profile ci --out /runs",
        'EXTRA_RUN_ARGS="--gpus all" DATA_DIR=path/to/ag_news scripts/container_run.sh runs chimera-bench:cuda '
        "chimera train --cell fixed/dense --profile ci --out /results"),
          why_not_run="NVIDIA GPUs (two machines for multi_node) and the CUDA image; CI machines have neither. The "
                      "same launcher runs on CPU in accelerate-launch (cpu_2proc.yaml) and torchrun, the same "
                      "container script in bench-cpu-docker; tests/unit/test_docker.py loads every accelerate config"),
    Smoke("ablation", ("make ablation", "chimera matrix --profile ci --ablation fixed/dense --seeds 0 1 2"), (
        Step('make ablation RUNS=$SMOKE/runs PUBLISH=$SMOKE/publish ABLATION_SEEDS=0 TRAIN_ARGS="$TINY --cells '
             'fixed/dense baseline/dense fixed/dense-without-dropout baseline/dense-with-dropout"'),)),
    Smoke("bands", ("make bands",), (
        Step('make bands RUNS=$SMOKE/runs PUBLISH=$SMOKE/publish BANDS_SEEDS="0 1" '
             'TRAIN_ARGS="$TINY --cells fixed/dense reference/bow"'),)),
    Smoke("committed-results", ("chimera report docs/results/ablation-ci", "chimera report docs/results/full"), (
        Step("$CHIMERA report docs/results/ablation-ci --out $SMOKE/ablation-report"),
        Step("$CHIMERA report docs/results/full --out $SMOKE/full-report"))),
    Smoke("bench-cpu", ("make bench-cpu", "pytest bench/test_bench_moe.py --benchmark-only",
                        "pytest bench/test_bench_ttq.py --benchmark-only"), (
        # every module of bench/ (the same files these commands name): ci shapes, tiny rounds and step budgets
        Step("CHIMERA_BENCH_ROUNDS=tiny CHIMERA_BENCH_PROFILE=ci make bench-cpu RESULTS=$SMOKE/bench"),)),
    Smoke("bench-summary", ("python bench/summarise.py --cells FILE",), (
        Step("$PY bench/summarise.py --cells $SMOKE/bench/cpu/bench.json"),)),
    Smoke("bench-compare", ("chimera bench compare", "chimera bench compare NEW.json BASELINE.json",
                            "chimera bench compare --markdown"), (
        Step("$CHIMERA bench compare bench/baselines/cpu.json bench/baselines/cpu.json --markdown $SMOKE/gate.md"),)),
    # the gate against the pass itself: the target's two-pass plumbing runs, and no noise can fail it
    Smoke("bench-ci", ("make bench-ci",), (
        Step("CHIMERA_BENCH_ROUNDS=tiny make bench-ci RESULTS=$SMOKE/bench BASELINE=$SMOKE/bench/ci/bench.json"),)),
    Smoke("history", ("chimera history add FILE_OR_FOLDER... [--store S]",
                      "chimera history add runs/ci bench/results/ci/bench.json", "chimera history",
                      "chimera history [show] [--cells P] [--bands B]",
                      "chimera report RUN_DIR --history S",
                      "chimera history export --format csv\\|json [--out FILE]",
                      "chimera history export --format csv --out history.csv",
                      "chimera history site OUT/", "chimera history site history-site/"), (
        Step("$CHIMERA history add $RECORDS $SMOKE/bench/cpu/bench.json --store $SMOKE/history.sqlite"),
        Step("$CHIMERA history show --store $SMOKE/history.sqlite"),
        Step("$CHIMERA history export --store $SMOKE/history.sqlite --format csv --out $SMOKE/history.csv"),
        Step("$CHIMERA history export --store $SMOKE/history.sqlite --format json", expect='"sha256"'),
        Step("$CHIMERA history site $SMOKE/history-site --store $SMOKE/history.sqlite", expect="cell page(s)"),
        Step("$CHIMERA report $RECORDS --history $SMOKE/history.sqlite --out $SMOKE/report-history"))),
    Smoke("bench-cpu-docker", ("DOCKER=podman make docker-cpu bench-cpu-docker", "make docker-cpu bench-cpu-docker",
                               "make docker-cpu", "make bench-cpu-docker", "make wheelhouse",
                               "pytest /app/bench -c /app/pyproject.toml --benchmark-only "
                               "--benchmark-json=/results/bench.json",  # the image's default command
                               "scripts/container_run.sh RESULTS_DIR IMAGE [COMMAND...]",
                               "DOCKER=podman DATA_DIR=path/to/ag_news scripts/container_run.sh runs/container "
                               "chimera-bench:cpu chimera train --cell fixed/dense --profile ci --out /results"), (
        Step('DOCKER=podman EXTRA_RUN_ARGS="-e CHIMERA_BENCH_ROUNDS=tiny -e CHIMERA_BENCH_PROFILE=ci" '
             'make docker-cpu bench-cpu-docker RESULTS=$SMOKE/bench TORCH_INDEX=', needs="podman"),
        Step("make wheelhouse TARGET=cpu TORCH_INDEX="),  # the image's wheels are there: pip downloads nothing
        Step("DOCKER=podman DATA_DIR=$DATA bash scripts/container_run.sh $SMOKE/container chimera-bench:cpu chimera "
             "train --cell fixed/dense --profile ci --out /results $TINY", needs="podman"))),
    Smoke("cuda-image", ("make docker-cuda",
                         'DOCKER=podman BUILD_FLAGS="-v /etc/ssl/certs:/etc/ssl/certs:ro" make docker-cuda'),
          why_not_run="about 3 GB of wheels and 15 minutes (docs/containers.md); the CPU image, built from the same "
                      "Dockerfile, runs in bench-cpu-docker, and scripts/check_cuda_set.sh resolves the CUDA set"),
    Smoke("bench-cuda", ("make bench-cuda",), (
        Step("make bench-cuda", ok=(2,), expect="bench-cuda needs an NVIDIA GPU"),)),
    Smoke("bench-cuda-native", ("make bench-cuda-native", "make bench-cuda-native CUDA_PY=python3"), (
        Step("make bench-cuda-native CUDA_PY=$PY", ok=(2,), expect="sees no CUDA device"),)),
    Smoke("bench-mps", ("make bench-mps",), (
        Step("make bench-mps", ok=(2,), expect="bench-mps needs an Apple silicon Mac"),)),
    Smoke("gpu-check", ("scripts/gpu_check.sh --prepare", "scripts/gpu_check.sh --device cuda --budget full",
                        "scripts/gpu_check.sh --prepare --kit DIR [--data-dir AG_NEWS]",
                        "scripts/gpu_check.sh --device cuda --budget full --kit DIR"), (
        Step("bash scripts/gpu_check.sh --prepare --no-download --kit $SMOKE/kit --data-dir $DATA"),
        Step("bash scripts/gpu_check.sh --device cuda --budget full --kit $SMOKE/kit --out $SMOKE/gpu-check", ok=(2,),
             expect="CUDA is not available"))),
    Smoke("repro", ("tox -e repro", 'CHIMERA_REPRO_SET="data.train_samples=256 data.val_samples=64 '
                    "data.test_samples=64 data.max_length=16 data.vocab_size=512 model.d_model=32 model.d_ff=64 "
                    'model.n_layers=1 train.warmup_steps=5 train.max_steps=40 train.eval_every=10" tox -e repro',
                    "CHIMERA_REPRO_SECOND_SEED=1 tox -e repro"), (
        Step('CHIMERA_REPRO_SET="${TINY//--set /}" CHIMERA_REPRO_CELLS="fixed/dense" $VENV/bin/tox -e repro'),
        Step('CHIMERA_REPRO_SET="${TINY//--set /}" CHIMERA_REPRO_CELLS="fixed/dense" CHIMERA_REPRO_SECOND_SEED=1 '
             "$VENV/bin/tox -e repro", ok=(1,), expect="DIFFERENT"))),  # the comparison has teeth
    Smoke("data-manifest", ('python scripts/make_data_manifest.py "$CHIMERA_DATA_DIR" --name '
                            "ag_news-train-subset --check",
                            "scripts/make_data_manifest.py DATA --name NAME --as-dataset --text-column headline "
                            "--label-column topic"), (
        Step("$PY scripts/make_data_manifest.py $DATA --name ag_news-train-subset --check"),
        # another dataset's own pool: the AG News train file read as "your data", written outside the package
        Step("$PY scripts/make_data_manifest.py $DATA/train.csv --name own --as-dataset --out $SMOKE/own-pool.txt"),)),
    Smoke("full-record-from-the-hub", ("chimera reproduce docs/results/full/fixed-dense-full-s0/record.json "
                                       "--out runs/reproduced",),
          why_not_run="no --data-dir: it reads the Hugging Face hub, which CI cannot reach, and trains the full "
                      "profile; reproduce runs the same command on a ci record, and "
                      "tests/integration/test_data_manifest_real.py rebuilds the committed records' subsets"),
    Smoke("lock-requirements", ("bash scripts/lock_requirements.sh",),
          why_not_run="re-resolves every pinned set against the package indexes (minutes of downloads) and rewrites "
                      "them; tests/unit/test_requirements.py checks the sets it wrote agree"),
)


def is_command(text: str) -> bool:
    """A known program with at least one argument, after any environment assignments."""
    return bool(COMMAND_START.match(text[ENV_ASSIGNMENTS.match(text).end():]))


def page_commands(text: str) -> set[str]:
    """The commands a page shows: code spans and fenced-block lines (continuations joined) that are commands."""
    found = set()
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M):
        found |= {" ".join(line.split(" #")[0].split()) for line in re.sub(r"\\\n", " ", block).splitlines()}
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", text, flags=re.S | re.M)
    found |= {" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)}
    return {command for command in found if is_command(command)}


def shown_commands(root: Path = REPO) -> dict[str, list[str]]:
    """Every command README.md and docs/*.md show, with the pages that show it."""
    pages = sorted({path for pattern in PAGES for path in root.glob(pattern) if path.is_file()})
    shown: dict[str, list[str]] = {}
    for path in pages:
        for command in page_commands(path.read_text(encoding="utf-8")):
            shown.setdefault(command, []).append(path.relative_to(root).as_posix())
    return shown


def covered() -> set[str]:
    return {command for smoke in SMOKES for command in smoke.covers}


def uncovered(shown: dict[str, list[str]]) -> set[str]:
    """Shown commands no entry covers."""
    return set(shown) - covered()


def chimera_commands(text: str) -> set[str]:
    """The chimera commands a shell line or README command runs, named as the command table names them
    ("bands check"; `chimera history` is "history show", its default); an undeclared one as typed."""
    groups = {command.name: command for command in COMMANDS if command.subcommands}
    found = set()
    for first, second in CHIMERA_CALL.findall(text):
        sub = second.strip("[]")
        for name in re.split(r"\\?\|", first):  # `chimera train\|matrix ...` names two
            if name.startswith("-") or name == "...":
                continue  # `chimera --version`: no command
            if name not in groups:
                found.add(name)
            elif sub in {s.name for s in groups[name].subcommands} or not groups[name].default:
                found.add(f"{name} {sub}".strip())
            else:
                found.add(f"{name} {groups[name].default}")
    return found


def undeclared(smokes: tuple[Smoke, ...] = SMOKES) -> set[str]:
    """chimera commands an entry covers or runs that the command table does not declare (old spellings too)."""
    texts = [text for smoke in smokes for text in (*smoke.covers, *(step.run for step in smoke.steps))]
    return {name for text in texts for name in chimera_commands(text)} - set(leaves())


def _environment(out: Path, records: Path | None, data: str) -> dict[str, str]:
    venv = REPO / ".venv"
    return {**os.environ, "SMOKE": str(out), "RECORDS": str(records or out / "no-records"), "DATA": data,
            "TINY": TINY, "VENV": str(venv), "PY": str(venv / "bin" / "python"),
            "CHIMERA": str(venv / "bin" / "chimera"),
            "CHIMERA_DATA_DIR": data, "TOKENIZERS_PARALLELISM": "false"}


def run_step(step: Step, env: dict[str, str], log: Path) -> tuple[str, str]:
    """("ok" | "FAILED" | "skipped", why)."""
    if step.needs and not shutil.which(step.needs):
        return "skipped", f"{step.needs} not found"
    started = time.monotonic()
    with log.open("a", encoding="utf-8") as sink:
        sink.write(f"\n$ {step.run}\n")
        sink.flush()
        done = subprocess.run(["bash", "-c", step.run], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        sink.write(done.stdout)
    took = f"{time.monotonic() - started:.0f} s"
    if done.returncode not in step.ok:
        return "FAILED", f"exit {done.returncode} (allowed {', '.join(map(str, step.ok))}), {took}"
    if TRACEBACK in done.stdout:
        return "FAILED", f"a Python traceback in its output, {took}"
    if step.expect and step.expect not in done.stdout:
        return "FAILED", f"its output lacks {step.expect!r}, {took}"
    return "ok", took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--records", type=Path, help="folder of real ci-profile records (doctor, loss gate, history)")
    data_default = os.environ.get("CHIMERA_DATA_DIR") or str(REPO.parent / "shared/data/ag_news")
    parser.add_argument("--data-dir", default=data_default,
                        help="AG News folder (default $CHIMERA_DATA_DIR, else ../shared/data/ag_news)")
    parser.add_argument("--out", type=Path, help="scratch folder (default: a new temporary folder)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these entries only")
    parser.add_argument("--strict", action="store_true", help="a skipped step fails the run (CI)")
    parser.add_argument("--list", action="store_true", help="print README command -> entry and exit")
    args = parser.parse_args(argv)

    shown = shown_commands()
    missing = uncovered(shown)
    if args.list:
        for smoke in SMOKES:
            for command in smoke.covers:
                print(f"{smoke.name:24} {command}   [{', '.join(shown.get(command, ['shown nowhere']))}]")
        print("\n".join(f"{'(none)':24} {command}   [{', '.join(shown[command])}]" for command in sorted(missing)))
        return 0
    if missing:
        print("commands shown with no smoke entry: " + "; ".join(sorted(missing)), file=sys.stderr)
        return 1
    if undeclared():
        print("smoke entries name commands chimera/commands.py does not declare: " + "; ".join(sorted(undeclared())),
              file=sys.stderr)
        return 1
    names = {smoke.name for smoke in SMOKES}
    if args.only and set(args.only) - names:
        parser.error(f"--only: unknown {sorted(set(args.only) - names)}; entries: {', '.join(sorted(names))}")
    if args.records is not None and not any(args.records.rglob("record.json")):
        parser.error(f"--records {args.records}: no record.json under it")
    if not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir}: not a folder")

    out = (args.out or Path(tempfile.mkdtemp(prefix="chimera-smoke-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "smoke.log"
    env = _environment(out, args.records.resolve() if args.records else None, str(Path(args.data_dir).resolve()))
    failed = skipped = 0
    for smoke in SMOKES:
        if args.only and smoke.name not in args.only:
            continue
        if smoke.why_not_run:
            print(f"{smoke.name:24} not run here: {smoke.why_not_run}", flush=True)
            continue
        if args.records is None and "$RECORDS" in " ".join(step.run for step in smoke.steps):
            print(f"{smoke.name:24} skipped: needs --records", flush=True)
            skipped += 1
            continue
        for step in smoke.steps:
            verdict, why = run_step(step, env, log)
            print(f"{smoke.name:24} {verdict:7} {why}   $ {step.run[:110]}", flush=True)
            failed += verdict == "FAILED"
            skipped += verdict == "skipped"
            if verdict != "ok":
                break
    print(f"readme smoke: {failed} failed, {skipped} skipped; log {log}")
    return 1 if failed or (args.strict and skipped) else 0


if __name__ == "__main__":
    sys.exit(main())
