"""Curator's default executor, on this package's actor-pool engine (no cosmos-xenna needed)."""

from nemo_curator.backends.xenna.executor import XennaExecutor

__all__ = ["XennaExecutor"]
