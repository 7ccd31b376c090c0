"""Reliability drills (see conftest.py)."""
