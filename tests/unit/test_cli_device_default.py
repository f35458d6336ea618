"""`--device` defaults to $CHIMERA_DEVICE, which the container images set to their target, so a CUDA
image on a host without a visible GPU stops instead of training on the CPU; a bad value is a usage error."""

from __future__ import annotations

import pytest

from chimera.cli import build_parser


@pytest.mark.parametrize("command", ["train", "matrix"])
def test_device_defaults_to_the_environment_then_auto(command, monkeypatch):
    argv = [command, "--cell", "fixed/dense"] if command == "train" else [command]
    monkeypatch.delenv("CHIMERA_DEVICE", raising=False)
    assert build_parser().parse_args(argv).device == "auto"
    monkeypatch.setenv("CHIMERA_DEVICE", "cuda")
    assert build_parser().parse_args(argv).device == "cuda"
    assert build_parser().parse_args([*argv, "--device", "cpu"]).device == "cpu"  # the flag wins


def test_a_bad_device_from_the_environment_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("CHIMERA_DEVICE", "gpu")
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["train", "--cell", "fixed/dense"])
    assert stop.value.code == 2
    assert "'gpu' is not one of auto, cpu, cuda, mps" in capsys.readouterr().err
