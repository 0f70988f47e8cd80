"""The main job of nemo-curator-rs: a web-text curation pipeline on a local Ray (`python -m nemo_curator.demo`)."""
