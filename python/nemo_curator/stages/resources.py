"""``Resources``: what one worker of a stage needs."""

from __future__ import annotations

from dataclasses import dataclass

# Used when the GPU's memory cannot be queried (no pynvml, no driver, no GPU).
_FALLBACK_GPU_MEMORY_GB = 24.0


def _get_gpu_memory_gb() -> float:
    """Total memory of GPU 0 in GiB, or 24.0 if it cannot be read."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            return float(pynvml.nvmlDeviceGetMemoryInfo(handle).total) / (1024**3)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return _FALLBACK_GPU_MEMORY_GB


@dataclass
class Resources:
    """Resources of one stage worker.

    ``gpus`` may be fractional. ``gpu_memory_gb`` asks for a share of one GPU and is converted to ``gpus`` at
    construction, from the memory of the GPU visible to the constructing process. ``nvdecs``, ``nvencs`` and
    ``entire_gpu`` are accepted for compatibility and ignored by the Ray executors.
    """

    cpus: float = 1.0
    gpu_memory_gb: float = 0.0
    nvdecs: int = 0
    nvencs: int = 0
    entire_gpu: bool = False
    gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.gpus > 0 and self.gpu_memory_gb > 0:
            msg = (
                "Cannot specify both gpus and gpu_memory_gb. Use gpus for whole or fractional GPUs, "
                "or gpu_memory_gb for a share of a single GPU."
            )
            raise ValueError(msg)
        if self.gpu_memory_gb > 0:
            self.gpus = round(self.gpu_memory_gb / _get_gpu_memory_gb(), 1)
            if self.gpus > 1:
                msg = (
                    f"gpu_memory_gb is too large for a single GPU ({self.gpu_memory_gb} GB requested). "
                    "Use gpus to request one or more whole GPUs."
                )
                raise ValueError(msg)

    @property
    def requires_gpu(self) -> bool:
        return self.gpus > 0 or self.gpu_memory_gb > 0 or self.entire_gpu
