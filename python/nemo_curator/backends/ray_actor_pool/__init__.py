"""Alias of `nemo_curator.backends.experimental.ray_actor_pool` (the path later Curator versions use)."""

from nemo_curator.backends.experimental.ray_actor_pool import RayActorPoolExecutor

__all__ = ["RayActorPoolExecutor"]
