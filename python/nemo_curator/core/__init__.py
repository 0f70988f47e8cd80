"""Cluster set-up for pipeline runs (Curator's ``nemo_curator.core``)."""

from nemo_curator.core.client import RayClient

__all__ = ["RayClient"]
