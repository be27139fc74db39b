"""``utils.get_device``: the preference, the ``DIFFCL_DEVICE`` environment variable and the errors."""
from __future__ import annotations

import pytest
import torch

from diffcl_lite.errors import DiffCLError
from diffcl_lite.utils import get_device


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine without CUDA or MPS, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None:
        monkeypatch.setattr(mps, "is_available", lambda: False)


def test_auto_without_a_gpu_is_the_cpu(monkeypatch, no_gpu):
    monkeypatch.delenv("DIFFCL_DEVICE", raising=False)
    assert get_device() == torch.device("cpu")
    assert get_device(None) == torch.device("cpu")


def test_the_environment_variable_decides_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # auto alone would pick CUDA
    monkeypatch.setenv("DIFFCL_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    assert get_device("auto") == torch.device("cpu")
    monkeypatch.setenv("DIFFCL_DEVICE", "CPU")  # case does not matter
    assert get_device() == torch.device("cpu")


def test_an_explicit_preference_wins_over_the_environment_variable(monkeypatch, no_gpu):
    monkeypatch.setenv("DIFFCL_DEVICE", "cuda")
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")


def test_an_unknown_device_is_refused_with_the_choices():
    with pytest.raises(DiffCLError, match="'tpu' is not known; use one of auto, cpu, cuda, mps"):
        get_device("tpu")


def test_cuda_without_cuda_is_a_clear_error(no_gpu, monkeypatch):
    monkeypatch.delenv("DIFFCL_DEVICE", raising=False)
    with pytest.raises(DiffCLError, match="CUDA is not available.*'cpu'"):
        get_device("cuda")
    with pytest.raises(DiffCLError, match="CUDA is not available"):
        get_device("cuda:1")


def test_the_environment_variable_asking_for_missing_cuda_is_an_error(no_gpu, monkeypatch):
    monkeypatch.setenv("DIFFCL_DEVICE", "cuda")
    with pytest.raises(DiffCLError, match="CUDA is not available"):
        get_device()


def test_an_invalid_environment_value_is_an_error(monkeypatch):
    monkeypatch.setenv("DIFFCL_DEVICE", "tpu")
    with pytest.raises(DiffCLError, match="is not known"):
        get_device()


@pytest.mark.parametrize("value", ["tpu", "cuda"])
def test_an_error_caused_by_the_environment_variable_names_it(monkeypatch, no_gpu, value):
    monkeypatch.setenv("DIFFCL_DEVICE", value)
    with pytest.raises(DiffCLError) as info:
        get_device()
    assert "DIFFCL_DEVICE" in str(info.value) and repr(value) in str(info.value)
