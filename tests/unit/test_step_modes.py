"""Which step mode a run takes, decided once in the device policy (pure functions, every device on a CPU)."""

from __future__ import annotations

import pytest

from chimera.errors import ChimeraError
from chimera.gates.bands import config_fingerprint
from chimera.records.upgrade import upgrade
from chimera.train.device import DeviceInfo, choose_policy, choose_step_mode
from chimera.train.plan import DYNAMO_ENV, refuse_accelerate_dynamo

CPU = DeviceInfo("cpu", "cpu", cpu_count=2)
MPS = DeviceInfo("mps", "Apple MPS (arm64)")
CUDA = DeviceInfo("cuda", "NVIDIA H100", cuda_bf16_supported=True, cpu_count=16)


@pytest.mark.parametrize(("info", "precision", "mode"), [
    (CUDA, "bf16", "graph"), (CUDA, "fp32", "graph"), (CUDA, "fp16", "eager"), (CPU, "fp32", "eager"),
    (MPS, "fp32", "eager")])
def test_auto_is_graph_on_cuda_and_eager_elsewhere_or_under_fp16(info, precision, mode):
    assert choose_step_mode(info, "auto", precision) == mode
    assert choose_policy(info, precision=precision, step_mode="auto").step_mode == mode


def test_every_device_may_step_eagerly_or_compiled():
    for info in (CPU, MPS, CUDA):
        assert choose_step_mode(info, "eager", "fp32") == "eager"
        assert choose_step_mode(info, "compile", "fp32") == "compile"


@pytest.mark.parametrize(("info", "mode", "precision", "says"), [
    (CPU, "graph", "fp32", "replays CUDA graphs, and this run's device is cpu"),
    (MPS, "graph", "fp32", "device is mps"),
    (CUDA, "compile", "fp16", "cannot run fp16"),
    (CUDA, "graph", "fp16", "cannot run fp16"),
    (CPU, "fused", "fp32", "use one of auto, eager, compile, graph")])
def test_a_mode_the_device_or_precision_cannot_run_is_one_line(info, mode, precision, says):
    with pytest.raises(ChimeraError, match=says) as caught:
        choose_step_mode(info, mode, precision)
    assert "\n" not in str(caught.value)


def test_accelerates_own_compilation_is_refused_rather_than_applied_twice():
    for value in (None, "", "NO", "no"):
        refuse_accelerate_dynamo(value)
    with pytest.raises(ChimeraError, match=f"{DYNAMO_ENV}=INDUCTOR .*train.step_mode=compile"):
        refuse_accelerate_dynamo("INDUCTOR")


def test_records_before_the_field_stepped_eagerly_and_keep_their_bands():
    old = {"schema_version": 3, "config": {"train": {"lr": 1e-4}}, "final_metrics": {"train_loss": 0.3}}
    new = upgrade(old)
    assert new["config"]["train"]["step_mode"] == "eager"
    assert new["final_metrics"] == {"clean_train_loss": 0.3}
    config = {"cell": "c", "data": {}, "train": {"lr": 1e-4}}
    assert config_fingerprint(config) == config_fingerprint({**config, "train": {"lr": 1e-4, "step_mode": "eager"}})
    assert config_fingerprint(config) != config_fingerprint({**config, "train": {"lr": 1e-4, "step_mode": "compile"}})
