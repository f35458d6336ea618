"""Precision as an axis: which device may run which precision (pure functions of a device description,
so CUDA, MPS and bf16 CPUs are tested on this AVX2 CPU), and who decides: train.precision (--precision,
--set) > accelerate launch's $ACCELERATE_MIXED_PRECISION > auto."""

from __future__ import annotations

import pytest

from chimera.config import PRECISIONS, TrainConfig
from chimera.errors import ChimeraError
from chimera.train.device import (
    DeviceInfo,
    choose_policy,
    cpu_has_native_bf16,
    native_precisions,
    precision_problem,
    resolve_precision,
)

A100 = DeviceInfo("cuda", "NVIDIA A100-SXM4-40GB", cuda_bf16_supported=True, cpu_count=16)
T4 = DeviceInfo("cuda", "Tesla T4", cpu_count=8)
M2 = DeviceInfo("mps", "Apple MPS (arm64)", cpu_count=8)
AVX2 = DeviceInfo("cpu", "AMD EPYC", cpu_count=2)
SAPPHIRE_RAPIDS = DeviceInfo("cpu", "Intel Xeon Platinum 8480+", cpu_count=8, cpu_bf16_supported=True)


@pytest.mark.parametrize(("info", "legal"), [
    (A100, {"fp32", "bf16", "fp16"}), (T4, {"fp32", "fp16"}), (M2, {"fp32"}),
    (AVX2, {"fp32"}), (SAPPHIRE_RAPIDS, {"fp32", "bf16"}),
])
def test_each_device_runs_exactly_its_legal_precisions(info, legal):
    assert {p for p in ("fp32", "bf16", "fp16") if precision_problem(info, p) is None} == legal


def test_bf16_on_a_cpu_with_native_bf16_autocasts_without_a_scaler_and_stays_deterministic():
    policy = choose_policy(SAPPHIRE_RAPIDS, precision="bf16")
    assert (policy.precision, policy.mixed_precision, policy.autocast, policy.grad_scaler) == (
        "bf16", "bf16", True, False)
    assert policy.deterministic_algorithms and policy.device == "cpu"


@pytest.mark.parametrize("info", [AVX2, SAPPHIRE_RAPIDS, M2])
def test_auto_stays_fp32_off_cuda_even_where_bf16_is_native(info):
    assert choose_policy(info).precision == "fp32"


@pytest.mark.parametrize(("info", "lacking"), [
    (AVX2, "its flags lack avx512_bf16 and amx_bf16"), (T4, "needs compute capability 8.0+"),
    (M2, "trains in fp32 on MPS"),
])
def test_bf16_where_the_hardware_lacks_it_is_one_line_naming_what_is_missing(info, lacking):
    with pytest.raises(ChimeraError, match=lacking) as caught:
        choose_policy(info, precision="bf16")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("info", "runs", "skipped"), [
    (AVX2, ("fp32",), {"bf16"}), (SAPPHIRE_RAPIDS, ("fp32", "bf16"), set()),
    (A100, ("fp32", "bf16"), set()), (T4, ("fp32", "fp16"), {"bf16"}), (M2, ("fp32",), {"bf16"}),
])
def test_native_precisions_are_fp32_plus_the_native_half_precision_with_reasons_for_the_rest(info, runs, skipped):
    native, left_out = native_precisions(info)
    assert native == runs and set(left_out) == skipped
    assert all(reason for reason in left_out.values())


@pytest.mark.parametrize(("flags", "capability", "native"), [
    ({"avx2", "fma"}, "AVX2", False),
    ({"avx512f", "avx512bw"}, "AVX512", False),  # AVX-512 alone has no bf16 arithmetic
    ({"avx512f", "avx512_bf16"}, "AVX512", True),
    ({"amx_bf16", "amx_tile"}, "AVX512", True),
    ({"asimd", "bf16"}, "DEFAULT", True),  # Arm (Neoverse V1 and newer) lists it in Features
    (set(), "AMX", True),
])
def test_native_cpu_bf16_comes_from_the_cpu_flags_or_torchs_capability(flags, capability, native):
    assert cpu_has_native_bf16(frozenset(flags), capability) is native


def test_this_avx2_machine_has_no_native_bf16():
    from chimera.train.device import cpu_flags, probe_device
    if cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"}:
        pytest.skip("this CPU has native bf16")
    assert probe_device("cpu").cpu_bf16_supported is False


@pytest.mark.parametrize(("configured", "launch", "precision", "source"), [
    ("auto", None, "auto", "auto"),
    ("auto", "", "auto", "auto"),
    ("auto", "bf16", "bf16", "accelerate"),
    ("auto", "fp16", "fp16", "accelerate"),
    ("auto", "no", "fp32", "accelerate"),  # accelerate's "no mixed precision" is fp32
    ("auto", "BF16", "bf16", "accelerate"),
    ("fp32", "bf16", "fp32", "config"),  # an explicit flag or --set beats the launch setting
    ("bf16", "no", "bf16", "config"),
    ("fp16", None, "fp16", "config"),
])
def test_precedence_is_explicit_then_accelerate_launch_then_auto(configured, launch, precision, source):
    choice = resolve_precision(configured, launch)
    assert (choice.precision, choice.source, choice.requested) == (precision, source, configured)


def test_an_accelerate_precision_chimera_does_not_run_is_refused_in_one_line():
    with pytest.raises(ChimeraError, match=r"ACCELERATE_MIXED_PRECISION=fp8") as caught:
        resolve_precision("auto", "fp8")
    assert "\n" not in str(caught.value)


def test_an_illegal_launch_precision_names_accelerate_as_its_source():
    with pytest.raises(ChimeraError, match=r"^\$ACCELERATE_MIXED_PRECISION=bf16 .*no native bf16"):
        resolve_precision("auto", "bf16").policy_for(AVX2)


def test_the_record_says_what_ran_and_who_chose_it():
    choice = resolve_precision("auto", "no")
    assert choice.record(choice.policy_for(A100)).to_json() == {
        "value": "fp32", "source": "accelerate", "requested": "auto", "accelerate_launch": "no"}
    auto = resolve_precision("auto", None)
    assert auto.record(auto.policy_for(A100)).value == "bf16"


def test_train_precision_is_validated_at_the_field():
    assert TrainConfig().precision == "auto" and PRECISIONS == ("auto", "fp32", "bf16", "fp16")
    with pytest.raises(ChimeraError, match="train.precision must be one of"):
        TrainConfig(precision="fp8")
