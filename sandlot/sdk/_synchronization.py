"""The few concurrency primitives that differ between the async and the sync SDK, in pairs.

``scripts/unasync.py`` turns ``AsyncBackgroundTask`` into ``BackgroundTask`` and ``asleep`` into
``sleep`` when it generates ``_sync`` from ``_async``, so the I/O code is written once and only
these few lines exist twice (httpcore's ``_synchronization.py`` does the same). A background
task reads a process's output stream while the caller goes on: an asyncio task in the async
SDK, a daemon thread in the sync one.

Example:
    >>> task = BackgroundTask(lambda: print("hi"))
    >>> task.wait()
    hi
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["AsyncBackgroundTask", "BackgroundTask", "asleep", "sleep"]


class AsyncBackgroundTask:
    """Runs ``function()`` as an asyncio task; :meth:`wait` returns when it has, re-raising its error.

    Example:
        >>> task = AsyncBackgroundTask(consume)
        >>> await task.wait()
    """

    def __init__(self, function: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._task: asyncio.Task[None] = asyncio.get_running_loop().create_task(function())

    async def wait(self) -> None:
        await asyncio.shield(self._task)

    def done(self) -> bool:
        return self._task.done()


class BackgroundTask:
    """Runs ``function()`` in a daemon thread; :meth:`wait` joins it, re-raising its error.

    Example:
        >>> task = BackgroundTask(consume)
        >>> task.wait()
    """

    def __init__(self, function: Callable[[], None]) -> None:
        self._error: BaseException | None = None
        self._function = function
        self._thread = threading.Thread(target=self._run, name="sandlot-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._function()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error

    def done(self) -> bool:
        return not self._thread.is_alive()


async def asleep(seconds: float) -> None:
    """``asyncio.sleep``; becomes :func:`sleep` in the sync SDK."""
    await asyncio.sleep(seconds)


def sleep(seconds: float) -> None:
    """``time.sleep``."""
    time.sleep(seconds)
