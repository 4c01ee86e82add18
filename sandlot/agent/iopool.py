"""The threads that touch sandboxes' files, apart from everything else the server does.

Work on a sandbox's files can block in ways its tenant controls (a FIFO, a huge directory,
a slow disk it keeps busy). So it never runs on the event loop, and never on asyncio's
default executor, where the store and the API-key checks run: one tenant must not be able to
take the threads that everyone else's requests need. Here:

* the pool has at most `MAX_WORKERS` threads, started when needed;
* one sandbox has at most `PER_SANDBOX` operations in a thread at once; a slot is given back
  when the thread is done, not when the caller stops waiting, so a sandbox whose calls hang
  holds its own slots and nobody else's;
* each call has a deadline (`TIMEOUT` unless the caller's is sooner): the caller gets
  `wire.DeadlineExceeded` then, whatever the thread still does;
* the threads are daemon threads that nobody joins, so a stuck one never keeps the server
  from exiting (asyncio's executors join theirs at exit, forever if need be).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sandlot._wire import errors as wire
from sandlot.agent import credentials

__all__ = ["MAX_WORKERS", "PER_SANDBOX", "TIMEOUT", "IOPool"]

MAX_WORKERS = 32
PER_SANDBOX = 4
TIMEOUT = 30.0
"""Seconds one operation may take unless the call's own deadline is sooner."""
_T = TypeVar("_T")
_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], None]]

logger = logging.getLogger("sandlot.agent.iopool")


class IOPool:
    """Runs blocking functions for sandboxes, each under its sandbox's cap and a deadline.

    Example:
        >>> pool = IOPool()
        >>> data = await pool.run("sbx1", lambda: os.read(fd, 4096))
    """

    def __init__(self, workers: int = MAX_WORKERS, per_sandbox: int = PER_SANDBOX, timeout: float = TIMEOUT) -> None:
        self.workers = workers
        self.per_sandbox = per_sandbox
        self.timeout = timeout
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._queued = 0
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._held: dict[str, int] = {}

    async def run(self, key: str, fn: Callable[[], _T], *, deadline: float | None = None) -> _T:
        """``fn()`` in a pool thread, counted against sandbox ``key``; its result or exception.

        Raises:
            wire.DeadlineExceeded: no slot or no result before the deadline.
        """
        loop = asyncio.get_running_loop()
        limit = loop.time() + self.timeout
        deadline = limit if deadline is None else min(deadline, limit)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(self.per_sandbox)
        self._held[key] = self._held.get(key, 0) + 1  # one semaphore per key while anyone uses it
        try:
            async with asyncio.timeout_at(deadline):
                await slots.acquire()
        except BaseException as exc:
            self._done(key)
            if isinstance(exc, TimeoutError):
                raise wire.DeadlineExceeded(
                    f"the sandbox already has {self.per_sandbox} file operations running that do not finish"
                ) from None
            raise
        future: asyncio.Future[_T] = loop.create_future()

        def release() -> None:
            slots.release()
            self._done(key)

        self._submit((fn, loop, future, release))
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(future)
        except TimeoutError:
            future.add_done_callback(_forget)
            raise wire.DeadlineExceeded("the file operation did not finish in time") from None

    def _done(self, key: str) -> None:
        self._held[key] -= 1
        if not self._held[key]:
            del self._held[key]
            del self._slots[key]

    def busy(self, key: str) -> int:
        """Operations of sandbox ``key`` now in a thread or waiting for one."""
        return self._held.get(key, 0)

    def _submit(self, job: _Job) -> None:
        with self._lock:
            self._jobs.put(job)
            self._queued += 1
            if self._queued <= self._idle or self._threads >= self.workers:
                return
            self._threads += 1
        threading.Thread(target=self._work, name="sandlot-io", daemon=True).start()

    def _work(self) -> None:
        while not credentials.tainted():
            with self._lock:
                self._idle += 1
            fn, loop, future, release = self._jobs.get()
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            try:
                result: Any = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                _deliver(loop, future, release, None, exc)
            else:
                _deliver(loop, future, release, result, None)
        with self._lock:
            self._threads -= 1
        logger.error("iopool.thread.tainted: a thread could not restore its credentials and ends")


def _forget(future: asyncio.Future[Any]) -> None:
    """Mark a late result read: nobody waits for it any more."""
    if not future.cancelled():
        future.exception()


def _deliver(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    release: Callable[[], None],
    result: Any,
    exc: BaseException | None,
) -> None:
    def settle() -> None:
        release()
        if future.cancelled():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(settle)
