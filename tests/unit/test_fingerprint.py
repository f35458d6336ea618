"""The hardware fingerprint (chimera/records/env.py): GPUs, driver, CUDA/cuDNN, RAM and the CPU flags that
matter, as flat fields of a record's env; the CUDA branch from a hand-written description."""

from __future__ import annotations

import json
from dataclasses import replace

import torch

from chimera.records import env as fp
from chimera.records.env import Hardware, fingerprint, nvidia_driver
from chimera.records.store import validate_record
from chimera.train.device import DeviceInfo, choose_policy, describe_environment
from tests.unit.record_factory import minimal_record

PROC_VERSION = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.124.06  Wed Mar 12 00:47:18 UTC 2025\n"
                "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
OPEN_MODULE = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  (dvs-builder@U16)\n"


def test_a_two_gpu_machine_is_described_by_count_names_capabilities_memory_driver_and_cudnn():
    hw = Hardware(cpu_flags=frozenset({"avx2", "fma", "sse2", "avx512_bf16", "amx_bf16", "ht"}), ram_bytes=256 * 2**30,
                  gpu_names=("NVIDIA H200", "NVIDIA H200"), gpu_capabilities=("9.0", "9.0"),
                  gpu_memory_bytes=(143_771_000_832, 143_771_000_832), cuda_runtime="13.0", cudnn_version=91002,
                  driver_version="570.124.06")
    assert fingerprint(hw) == {
        "cpu_flags": ["amx_bf16", "avx2", "avx512_bf16", "fma"],  # only those that change kernels, sorted
        "ram_gib": 256.0, "gpu_count": 2, "gpu_names": ["NVIDIA H200", "NVIDIA H200"],
        "gpu_capabilities": ["9.0", "9.0"], "gpu_memory_gib": [133.9, 133.9], "torch_cuda": "13.0",
        "cudnn_version": 91002, "cuda_driver": "570.124.06"}


def test_a_cpu_machine_has_no_gpu_fields_filled():
    got = fingerprint(Hardware(cpu_flags=frozenset({"avx2"}), ram_bytes=None))
    assert got["gpu_count"] == 0 and got["gpu_names"] == [] and got["cuda_driver"] is None
    assert got["ram_gib"] is None and got["cpu_flags"] == ["avx2"]


def test_the_driver_version_is_read_from_proc_for_both_kernel_modules(tmp_path, monkeypatch):
    version = tmp_path / "version"
    version.write_text(PROC_VERSION)
    assert nvidia_driver(version) == "570.124.06"
    version.write_text(OPEN_MODULE)
    assert nvidia_driver(version) == "580.65.06"
    monkeypatch.setattr(fp.shutil, "which", lambda name: None)
    assert nvidia_driver(tmp_path / "absent") is None


def test_this_machines_environment_carries_the_fingerprint_flat_and_the_record_stays_valid():
    info = DeviceInfo("cpu", "AMD EPYC", cpu_count=2)
    env = describe_environment(info, choose_policy(info))
    assert isinstance(env.cpu_flags, tuple) and env.ram_gib > 0 and env.cpu_name
    if not torch.cuda.is_available():
        assert env.gpu_count == 0 and env.cuda_driver is None and env.cudnn_version is None
    assert env.torch_cuda == torch.version.cuda
    assert all(not isinstance(v, dict) for v in env.to_json().values())  # a flat addition to the mapping
    record = replace(minimal_record(), env=env)
    validate_record(json.loads(json.dumps(record.to_json())))
