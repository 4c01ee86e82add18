"""The SDK's I/O code: ``_async`` is written by hand, ``_sync`` is generated from it by scripts/unasync.py."""
