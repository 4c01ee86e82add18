# Generated from sandlot/sdk/_async/__init__.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
"""The SDK's I/O code: ``_sync`` is written by hand, ``_sync`` is generated from it by scripts/unasync.py."""
