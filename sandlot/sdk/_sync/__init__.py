# Generated from sandlot/sdk/_async/__init__.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
"""The SDK's I/O code: the async package is written by hand; scripts/unasync.py generates the sync one from it."""
