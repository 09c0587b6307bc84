"""Helpers the tests share: builders, fixtures and paths (no tests in here).

A test module imports from here, never from another test module (tests/system/test_tree.py).
"""
