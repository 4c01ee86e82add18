"""What the Python fuzz targets share: an event loop per process, the input's option bytes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import atheris

__all__ = ["chunked", "fuzz_async", "split_options"]


def fuzz_async(test_one_input: Callable[[bytes], Awaitable[None]]) -> None:
    """Run libFuzzer (with the command line's flags) over an async target, one loop for all inputs.

    Any exception the target lets out is a finding: libFuzzer saves the input and stops.
    """
    loop = asyncio.new_event_loop()

    def one(data: bytes) -> None:
        loop.run_until_complete(test_one_input(data))

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


def split_options(data: bytes, count: int) -> tuple[bytes, bytes]:
    """The first ``count`` bytes (zero-padded) choose the options; the rest is the payload.

    Example:
        >>> split_options(b"\\x01xyz", 2)
        (b'\\x01x', b'yz')
    """
    return data[:count].ljust(count, b"\0"), data[count:]


async def chunked(body: bytes, size: int) -> AsyncIterator[bytes]:
    """``body`` in pieces of ``size`` bytes, so that the server's parser sees split input."""
    for start in range(0, len(body), size):
        yield body[start : start + size]
