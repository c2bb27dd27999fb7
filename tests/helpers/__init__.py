"""Helpers shared by the tests (no test cases here)."""
