"""Device policy: every branch of choose_policy from hand-written device descriptions (no GPU needed)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from chimera.config import DEVICE_TYPES, DEVICES, RunConfig
from chimera.errors import ChimeraError
from chimera.records.store import load_schema
from chimera.train import device as device_module
from chimera.train.device import (
    DeviceInfo,
    DevicePolicy,
    choose_policy,
    configure_process,
    describe_environment,
    git_state,
    probe_device,
)

REPO = Path(__file__).resolve().parents[2]
A100 = DeviceInfo("cuda", "NVIDIA A100-SXM4-40GB", cuda_bf16_supported=True, cpu_count=16)
T4 = DeviceInfo("cuda", "Tesla T4", cuda_bf16_supported=False, cpu_count=8)
M2 = DeviceInfo("mps", "Apple MPS (arm64)", cpu_count=8)
CPU2 = DeviceInfo("cpu", "AMD EPYC", cpu_count=2)


@pytest.fixture
def restore_torch_globals(monkeypatch):
    """configure_process changes process-wide torch state; put it back for the other tests."""
    for name in ("TOKENIZERS_PARALLELISM", "CUBLAS_WORKSPACE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    matmul = torch.get_float32_matmul_precision()
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.set_float32_matmul_precision(matmul)


def test_cuda_with_native_bf16_trains_in_bf16_autocast_without_scaler():
    policy = choose_policy(A100)
    assert (policy.device, policy.mixed_precision, policy.autocast, policy.grad_scaler) == (
        "cuda", "bf16", True, False)
    assert policy.pin_memory and policy.deterministic_algorithms and policy.fused_adamw
    assert policy.num_workers == 4  # min(4, 16 // 2)


def test_cuda_without_bf16_falls_back_to_fp16_with_grad_scaler():
    policy = choose_policy(T4)
    assert (policy.mixed_precision, policy.autocast, policy.grad_scaler, policy.pin_memory) == (
        "fp16", True, True, True)
    assert policy.num_workers == 4  # min(4, 8 // 2)


@pytest.mark.parametrize(("cpus", "workers"), [(1, 0), (2, 1), (6, 3), (8, 4), (64, 4)])
def test_cuda_loader_workers_are_half_the_cpus_capped_at_4(cpus, workers):
    assert choose_policy(DeviceInfo("cuda", "gpu", cpu_count=cpus)).num_workers == workers


def test_mps_trains_in_fp32_without_autocast_pinning_workers_or_determinism():
    policy = choose_policy(M2)
    assert policy == DevicePolicy(device="mps", mixed_precision="no", autocast=False, grad_scaler=False,
                                  pin_memory=False, num_workers=0, deterministic_algorithms=False,
                                  float32_matmul_precision="high", fused_adamw=False)


def test_cpu_trains_deterministically_in_fp32_in_the_main_process():
    policy = choose_policy(DeviceInfo("cpu", "big box", cpu_count=64))
    assert policy == DevicePolicy(device="cpu", mixed_precision="no", autocast=False, grad_scaler=False,
                                  pin_memory=False, num_workers=0, deterministic_algorithms=True,
                                  float32_matmul_precision="high", fused_adamw=True)


@pytest.mark.parametrize(("info", "precision", "mixed", "scaler"), [
    (A100, "fp32", "no", False), (A100, "fp16", "fp16", True), (A100, "bf16", "bf16", False),
    (T4, "fp32", "no", False), (T4, "fp16", "fp16", True),
    (M2, "fp32", "no", False), (CPU2, "fp32", "no", False),
])
def test_explicit_precision_is_honoured_where_legal(info, precision, mixed, scaler):
    policy = choose_policy(info, precision=precision)
    assert (policy.mixed_precision, policy.grad_scaler) == (mixed, scaler)
    assert policy.autocast == (mixed != "no")  # autocast only with mixed precision


@pytest.mark.parametrize(("info", "precision", "message"), [
    (CPU2, "fp16", "precision fp16 on cpu"), (CPU2, "bf16", r"this CPU \(AMD EPYC\) has no native bf16"),
    (M2, "fp16", "precision fp16 on mps"), (M2, "bf16", "precision bf16 on mps"),
    (T4, "bf16", "Tesla T4 has no native bf16"), (A100, "fp8", "use one of auto, fp32, bf16, fp16"),
])
def test_illegal_precision_is_a_one_line_chimera_error(info, precision, message):
    with pytest.raises(ChimeraError, match=message) as caught:
        choose_policy(info, precision=precision)
    assert "\n" not in str(caught.value)


def test_device_descriptions_reject_nonsense():
    with pytest.raises(ValueError):
        DeviceInfo("tpu", "x")
    with pytest.raises(ValueError):
        DeviceInfo("cpu", "x", cpu_count=0)
    with pytest.raises(ValueError):
        DeviceInfo("mps", "x", cuda_bf16_supported=True)
    with pytest.raises(ValueError):
        DevicePolicy("cpu", "fp32", False, False, False, 0, True)  # "fp32" is ours; accelerate says "no"


def test_probe_auto_on_this_cpu_machine_gives_cpu():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator")
    info = probe_device("auto")
    assert info.type == "cpu" and info.name and info.cpu_count >= 1
    assert probe_device("cpu") == info


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_probing_a_missing_accelerator_names_what_is_missing(device):
    available = torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()
    if available:
        pytest.skip(f"{device} is available here")
    with pytest.raises(ChimeraError, match=f"--device {device}: ") as caught:
        probe_device(device)
    assert "\n" not in str(caught.value)


def test_probing_an_unknown_device_is_a_chimera_error_naming_the_choices():
    with pytest.raises(ChimeraError, match="unknown device; use one of auto, cpu, cuda, mps"):
        probe_device("tpu")


def test_the_device_list_is_declared_once_in_config_and_the_record_schema_allows_the_same():
    assert DEVICES == ("auto", *DEVICE_TYPES) and DEVICE_TYPES == ("cpu", "cuda", "mps")
    assert device_module.DEVICE_TYPES is DEVICE_TYPES and device_module.DEVICES is DEVICES
    schema = load_schema()["properties"]
    assert tuple(schema["config"]["properties"]["device"]["enum"]) == DEVICES
    assert tuple(schema["env"]["properties"]["device_type"]["enum"]) == DEVICE_TYPES
    with pytest.raises(ChimeraError, match="device"):
        RunConfig(cell="fixed/dense", profile="ci", seed=0, device="tpu")


def test_configure_process_disables_tokenizer_parallelism_and_sets_torch_flags(restore_torch_globals):
    configure_process(choose_policy(CPU2))
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.get_float32_matmul_precision() == "high"
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ  # only CUDA needs it


def test_configure_process_sets_cublas_workspace_for_cuda_and_no_determinism_for_mps(restore_torch_globals):
    configure_process(choose_policy(A100))  # no CUDA work happens, so this runs on a CPU
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    configure_process(choose_policy(M2))
    assert not torch.are_deterministic_algorithms_enabled()


def test_describe_environment_fills_every_field_of_the_records_env():
    env = describe_environment(CPU2, choose_policy(CPU2))  # RunEnv.from_json refuses a missing field
    assert set(env.to_json()) == set(load_schema()["properties"]["env"]["required"])
    assert env.torch == torch.__version__
    assert (env.device_type, env.device_name, env.cpu_count) == ("cpu", "AMD EPYC", 2)
    assert env.torch_num_threads == torch.get_num_threads()
    assert (env.mixed_precision, env.precision) == ("no", "fp32")


def test_git_state_is_the_checkouts_head_or_none_outside_one(tmp_path):
    state = git_state(REPO)
    if state["git_commit"] is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", state["git_commit"])
    assert git_state(tmp_path) == {"git_commit": None, "git_dirty": None}


def test_no_deprecated_cuda_amp_api_anywhere():
    """torch.cuda.amp.* is deprecated; everything must use torch.amp (autocast, GradScaler("cuda"))."""
    deprecated = re.compile(r"torch\.cuda\.amp|from\s+torch\.cuda\s+import\s+amp")
    me = Path(__file__).resolve()
    files = [path for folder in ("chimera", "bench", "tests", "docker", "scripts") if (REPO / folder).is_dir()
             for path in (REPO / folder).rglob("*.py") if path.resolve() != me]
    assert files, "found no Python files to check"
    hits = [f"{path.relative_to(REPO)}:{number}" for path in files
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if deprecated.search(line)]
    assert not hits, f"deprecated torch.cuda.amp used at {hits}; use torch.amp"
