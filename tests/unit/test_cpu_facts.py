"""CPU facts come from py-cpuinfo on every OS: the same /proc/cpuinfo gives the flags, name and native-bf16
decision that hand-parsing it gave, on sample machines and on this one."""

from __future__ import annotations

from pathlib import Path

import cpuinfo
import pytest
import torch

from chimera.records.env import RELEVANT_CPU_FLAGS
from chimera.train import device as device_module
from chimera.train.device import cpu_flags, cpu_has_native_bf16, cpu_name

SAPPHIRE_RAPIDS = ("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
                   "model name\t: Intel(R) Xeon(R) Platinum 8480+\n"
                   "flags\t\t: fpu sse2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx512_bf16 "
                   "avx512_fp16 amx_bf16 amx_tile amx_int8\n")
EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma f16c sha_ni vaes
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm sve i8mm bf16
CPU implementer\t: 0x41
"""


def _hand_parsed(text: str) -> frozenset[str]:
    """What chimera read from /proc/cpuinfo itself before py-cpuinfo: the first `flags` or `Features` line."""
    line = next(line for line in text.splitlines() if line.startswith(("flags", "Features")))
    return frozenset(line.split(":", 1)[1].split())


@pytest.fixture
def proc_cpuinfo(monkeypatch):
    """py-cpuinfo reading only the given /proc/cpuinfo text: its other sources (lscpu, CPUID, sysctl...) off."""
    source = cpuinfo.cpuinfo.DataSource

    def use(text: str) -> None:
        for name in dir(source):
            if name.startswith("has_"):
                monkeypatch.setattr(source, name, staticmethod(lambda: False))
        monkeypatch.setattr(source, "has_proc_cpuinfo", staticmethod(lambda: True))
        monkeypatch.setattr(source, "cat_proc_cpuinfo", staticmethod(lambda: (0, text)))
        monkeypatch.setattr(source, "can_cpuid", False)
        device_module._cpu_info.cache_clear()

    yield use
    device_module._cpu_info.cache_clear()


@pytest.mark.parametrize(("text", "name", "native"), [
    (SAPPHIRE_RAPIDS, "Intel(R) Xeon(R) Platinum 8480+", True),
    (EPYC, "AMD EPYC 7B13", False),
    (GRAVITON3, None, True),  # Arm lists no model name: the name then comes from elsewhere
])
def test_the_same_proc_cpuinfo_gives_the_same_flags_name_and_bf16_decision(proc_cpuinfo, text, name, native):
    proc_cpuinfo(text)
    assert cpu_flags() == _hand_parsed(text)
    for capability in ("DEFAULT", "AVX2", "AVX512"):  # the flags decide, whatever torch's kernels
        assert cpu_has_native_bf16(cpu_flags(), capability) is cpu_has_native_bf16(_hand_parsed(text), capability)
        assert cpu_has_native_bf16(cpu_flags(), capability) is native
    if name is not None:
        assert cpu_name() == name
    assert cpu_name()


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="Linux only: compares against /proc/cpuinfo")
def test_on_this_linux_machine_py_cpuinfo_keeps_every_proc_flag_and_the_same_decision():
    device_module._cpu_info.cache_clear()
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    by_hand = _hand_parsed(text)
    assert by_hand <= cpu_flags()  # CPUID may add its own spellings (avx512vnni beside avx512_vnni)
    assert cpu_flags() & set(RELEVANT_CPU_FLAGS) == by_hand & set(RELEVANT_CPU_FLAGS)
    capability = torch.backends.cpu.get_cpu_capability()
    assert cpu_has_native_bf16(cpu_flags(), capability) is cpu_has_native_bf16(by_hand, capability)
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), None)
    if model:
        assert cpu_name() == model
