"""``Pipeline``: an ordered list of stages and the executor call that runs it."""

from nemo_curator.pipeline.pipeline import Pipeline

__all__ = ["Pipeline"]
