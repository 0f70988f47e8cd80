"""Curator's default (cosmos-xenna) executor: present for import compatibility only."""

from nemo_curator.backends.xenna.executor import XennaExecutor

__all__ = ["XennaExecutor"]
