"""Curator's Ray Data executor: a pipeline as one streaming Ray Data dataset of Arrow task blocks."""

from nemo_curator.backends.experimental.ray_data.config import RayDataConfig as RayDataConfig
from nemo_curator.backends.experimental.ray_data.executor import RayDataExecutor
from nemo_curator.backends.experimental.ray_data.executor import StageFailedError as StageFailedError

__all__ = ["RayDataExecutor"]
