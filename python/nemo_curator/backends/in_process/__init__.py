"""A single-process executor: the reference semantics every other executor must reproduce."""

from nemo_curator.backends.in_process.executor import InProcessExecutor

__all__ = ["InProcessExecutor"]
