from nemo_curator.stages.text.modifiers.content_hash import AddContentHash

__all__ = ["AddContentHash"]
