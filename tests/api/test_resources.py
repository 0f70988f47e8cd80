"""nemo_curator.stages.resources.Resources."""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest

from nemo_curator.stages import resources as resources_module
from nemo_curator.stages.resources import Resources


def test_defaults() -> None:
    res = Resources()
    assert (res.cpus, res.gpu_memory_gb, res.nvdecs, res.nvencs, res.entire_gpu, res.gpus) == (
        1.0,
        0.0,
        0,
        0,
        False,
        0.0,
    )
    assert [f.name for f in dataclasses.fields(Resources)] == [
        "cpus",
        "gpu_memory_gb",
        "nvdecs",
        "nvencs",
        "entire_gpu",
        "gpus",
    ]
    assert res.requires_gpu is False


def test_equality_and_str() -> None:
    assert Resources(cpus=2.0) == Resources(cpus=2.0)
    assert Resources(cpus=2.0) != Resources(cpus=3.0)
    assert "cpus=2.0" in str(Resources(cpus=2.0))


def test_fractional_gpus() -> None:
    res = Resources(cpus=0.5, gpus=0.25)
    assert res.gpus == 0.25 and res.requires_gpu


def test_entire_gpu_requires_gpu() -> None:
    assert Resources(entire_gpu=True).requires_gpu


def test_gpus_and_gpu_memory_conflict() -> None:
    with pytest.raises(ValueError, match="Cannot specify both gpus and gpu_memory_gb"):
        Resources(gpus=1.0, gpu_memory_gb=8.0)


def test_gpu_memory_converted_with_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources_module, "_get_gpu_memory_gb", lambda: 24.0)
    res = Resources(gpu_memory_gb=12.0)
    assert res.gpus == 0.5 and res.requires_gpu
    tiny = Resources(gpu_memory_gb=1.0)
    assert tiny.gpus == 0.0 and tiny.requires_gpu  # rounds to no GPU share but still "requires" one
    with pytest.raises(ValueError, match="gpu_memory_gb is too large for a single GPU"):
        Resources(gpu_memory_gb=30.0)
    # dataclasses.replace re-runs __post_init__ with both fields set.
    with pytest.raises(ValueError, match="Cannot specify both"):
        dataclasses.replace(res, cpus=2.0)


def test_get_gpu_memory_falls_back_to_24(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = types.ModuleType("pynvml")

    def _fail() -> None:
        raise RuntimeError("no driver")

    broken.nvmlInit = _fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    assert resources_module._get_gpu_memory_gb() == 24.0


def test_get_gpu_memory_reads_device_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    fake = types.ModuleType("pynvml")
    fake.nvmlInit = lambda: calls.append("init")  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda index: calls.append(("handle", index)) or "h0"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(total=80 * 1024**3)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert resources_module._get_gpu_memory_gb() == pytest.approx(80.0)
    assert calls == ["init", ("handle", 0), "shutdown"]
    assert Resources(gpu_memory_gb=40.0).gpus == 0.5
