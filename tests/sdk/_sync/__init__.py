# Generated from tests/sdk/_async/__init__.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
