"""Tests of the executors use the shared ``ray_session`` fixture (tests/conftest.py)."""
