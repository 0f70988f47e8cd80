"""Alias of `nemo_curator.backends.experimental.ray_data` (the path later Curator versions use)."""

from nemo_curator.backends.experimental.ray_data import RayDataExecutor

__all__ = ["RayDataExecutor"]
