"""The SDK's I/O code: the async package is written by hand; scripts/unasync.py generates the sync one from it."""
