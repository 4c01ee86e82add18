"""Warm pools: sandboxes made ahead of time, so that asking for one costs a lookup, not a boot.

One mechanism serves two kinds of pool:

- a **claim** pool (``POST /sandboxes``): a sandbox taken from it leaves it for good, and the
  pool makes another in the background;
- a **reuse** pool (``POST /execute``'s runner sandboxes): a sandbox taken for a run is given
  back after it, reset (`RuntimeDriver.reset`) and its limits and network policy put back,
  then handed to the next run. A reset that fails, or a sandbox that served ``max_uses``
  runs, is destroyed and replaced.

Size: the pool holds ``target`` sandboxes (ready, being made, and for a reuse pool in use)
between ``min_size`` and ``max_size``. A take that finds none ready raises the target by one;
``shrink_after`` seconds without such a miss lower it by one and destroy an idle sandbox above
it. At most two sandboxes are made at once, as a 2-core host gains nothing from more.

Waiting: `take` waits, first come first served, when none is ready. At most ``max_waiting``
takes wait at once (one more raises `PoolFull`), each at most ``wait_timeout`` seconds (then
`PoolBusy`). A pool whose creates keep failing raises `PoolBroken` at once rather than make
anyone wait for a sandbox that will not come.

Pool sandboxes are the driver's only: the store knows a claimed one from its claim on, so a
restart's reconcile removes whatever a pool held.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from sandlot.config import Settings
from sandlot.lifecycle import records
from sandlot.runtime import base, models

__all__ = ["Pool", "PoolBroken", "PoolBusy", "PoolError", "PoolFull", "PoolStats", "sandbox_pool"]

logger = logging.getLogger("sandlot.lifecycle.pools")

_PARALLEL_CREATES = 2
_BROKEN_AFTER = 3
"""Creates failing in a row before the pool counts as broken."""


class PoolError(Exception):
    """No sandbox can be had from the pool now; the message says why."""


class PoolFull(PoolError):
    """As many takes as allowed are waiting already."""


class PoolBusy(PoolError):
    """No sandbox became free within the pool's wait timeout."""


class PoolBroken(PoolError):
    """The pool cannot make sandboxes (its last error is in the message), or it is closing."""


@dataclasses.dataclass(frozen=True)
class PoolStats:
    ready: int
    busy: int
    creating: int
    waiting: int
    target: int
    min_size: int
    max_size: int
    healthy: bool
    last_error: str | None


class Pool:
    """Sandboxes of one spec kept ready.

    Example:
        >>> pool = Pool(driver, lambda: models.SandboxSpec(sandbox_id=new_id(), runner=True),
        ...             name="runner", min_size=2, max_size=8, reuse=True)
        >>> pool.start()
        >>> sandbox_id = await pool.take()
        >>> pool.give_back(sandbox_id)
        >>> await pool.aclose()
    """

    def __init__(
        self,
        driver: base.RuntimeDriver,
        make_spec: Callable[[], models.SandboxSpec],
        *,
        name: str,
        min_size: int,
        max_size: int,
        reuse: bool,
        max_waiting: int = 0,
        wait_timeout: float = 0.0,
        max_uses: int = 500,
        shrink_after: float = 60.0,
    ) -> None:
        if not 0 <= min_size <= max_size:
            raise ValueError(f"pool {name}: need 0 <= min_size ({min_size}) <= max_size ({max_size})")
        self.driver = driver
        self.name = name
        self.make_spec = make_spec
        self.spec = make_spec()
        """What every sandbox of the pool is made from (but its id): for matching requests."""
        self.min_size, self.max_size, self.target = min_size, max_size, min_size
        self.reuse = reuse
        self.max_waiting, self.wait_timeout = max_waiting, wait_timeout
        self.max_uses, self.shrink_after = max_uses, shrink_after
        self._ready: collections.deque[str] = collections.deque()
        self._busy: set[str] = set()
        self._uses: dict[str, int] = {}
        self._creating = 0
        self._recycling = 0
        self._waiters: collections.deque[asyncio.Future[str]] = collections.deque()
        self._failures = 0
        self._last_error: str | None = None
        self._last_miss = time.monotonic()
        self._tasks: set[asyncio.Task[Any]] = set()
        """Creates, resets and destroys under way: never cancelled, waited for at close."""
        self._retry: asyncio.TimerHandle | None = None
        self._shrinker: asyncio.Task[None] | None = None
        self._closed = False

    # -- asking for sandboxes --------------------------------------------------------------

    def take_nowait(self) -> str | None:
        """A ready sandbox, or None (and the pool grows) when there is none."""
        if self._closed or self._waiters or not self._ready:
            self._missed()
            return None
        return self._hand_out(self._ready.popleft())

    async def take(self) -> str:
        """A ready sandbox, waiting for one in turn when there is none (module docstring)."""
        found = self.take_nowait()
        if found is not None:
            return found
        if self._closed:
            raise PoolBroken(f"pool {self.name} is closing")
        if self.broken and not (self._busy or self._creating):
            raise PoolBroken(f"pool {self.name} cannot make sandboxes: {self._last_error}")
        if len(self._waiters) >= self.max_waiting:
            raise PoolFull(f"pool {self.name}: {len(self._waiters)} requests are waiting already")
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.wait_timeout):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._offer(waiter.result())  # it came too late for us: the next one's
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise PoolBusy(f"no sandbox of pool {self.name} became free in {self.wait_timeout:g} s") from None
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def give_back(self, sandbox_id: str) -> None:
        """End a reuse pool's run on ``sandbox_id``: it is reset in the background and handed
        to the next take, or replaced when the reset fails."""
        if not self.reuse or sandbox_id not in self._busy:
            raise ValueError(f"{sandbox_id!r} is not a sandbox taken from pool {self.name}")
        self._recycling += 1
        self._spawn(self._recycle(sandbox_id))

    def discard(self, sandbox_id: str) -> None:
        """Destroy a taken sandbox that must not be used again; the pool makes another."""
        self._busy.discard(sandbox_id)
        self._uses.pop(sandbox_id, None)
        self._spawn(self._destroy(sandbox_id))
        self._fill()

    # -- state -------------------------------------------------------------------------------

    @property
    def broken(self) -> bool:
        return self._failures >= _BROKEN_AFTER

    def stats(self) -> PoolStats:
        return PoolStats(
            ready=len(self._ready), busy=len(self._busy), creating=self._creating,
            waiting=len(self._waiters), target=self.target, min_size=self.min_size,
            max_size=self.max_size, healthy=not self.broken, last_error=self._last_error,
        )

    def start(self) -> None:
        self._fill()
        self._shrinker = asyncio.get_running_loop().create_task(self._shrink())

    async def aclose(self) -> None:
        """Destroy every sandbox the pool holds (a reuse pool's in-use ones too)."""
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        for waiter in self._waiters:
            waiter.cancel()
        if self._shrinker is not None:
            self._shrinker.cancel()
        # Creates, resets and destroys under way are waited for, not cancelled: a cancelled
        # create would tear its half-made sandbox down after the server is gone.
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        doomed = [*self._ready, *self._busy]
        self._ready.clear()
        self._busy.clear()
        await asyncio.gather(*(self._destroy(sid) for sid in doomed))

    # -- inside ------------------------------------------------------------------------------

    @property
    def _size(self) -> int:
        return len(self._ready) + self._creating + (len(self._busy) if self.reuse else 0)

    def _hand_out(self, sandbox_id: str) -> str:
        if self.reuse:
            self._busy.add(sandbox_id)
            self._uses[sandbox_id] = self._uses.get(sandbox_id, 0) + 1
        else:
            self._uses.pop(sandbox_id, None)
        self._fill()
        return sandbox_id

    def _offer(self, sandbox_id: str) -> None:
        """A sandbox is free: the longest-waiting take gets it (handed out at once, so that
        nobody counts it as missing meanwhile), else it is ready."""
        if self.reuse:
            self._busy.discard(sandbox_id)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._hand_out(sandbox_id))
                return
        self._ready.append(sandbox_id)

    def _missed(self) -> None:
        # A reuse pool's sandboxes being reset are ready in a few milliseconds: a take that
        # will get one of them is no reason to make another.
        if not (self.reuse and self._recycling > len(self._waiters)):
            self._last_miss = time.monotonic()
            if self.target < self.max_size:
                self.target += 1
        self._fill()

    def _fill(self) -> None:
        if self._closed or (self.broken and self._retry is not None):
            return
        while self._size < self.target and self._creating < _PARALLEL_CREATES:
            self._creating += 1
            self._spawn(self._create())

    async def _create(self) -> None:
        spec = self.make_spec()
        try:
            await self.driver.create(spec=spec)
        except Exception as exc:  # noqa: BLE001 - counted, logged, retried with a backoff
            self._failures += 1
            self._last_error = str(exc)
            logger.warning("pools.create.failed %s (%d in a row): %s", self.name, self._failures, exc)
            if self.broken:
                for waiter in self._waiters:
                    if not waiter.done():
                        waiter.set_exception(PoolBroken(f"pool {self.name} cannot make sandboxes: {exc}"))
            delay = min(30.0, 0.5 * 2**self._failures)
            self._retry = asyncio.get_running_loop().call_later(delay, self._retry_fill)
            return
        finally:
            self._creating -= 1
        self._failures, self._last_error = 0, None
        self._uses[spec.sandbox_id] = 0
        self._offer(spec.sandbox_id)
        self._fill()

    def _retry_fill(self) -> None:
        self._retry = None
        self._fill()

    async def _recycle(self, sandbox_id: str) -> None:
        try:
            if self._uses.get(sandbox_id, 0) >= self.max_uses:
                raise PoolError(f"served {self.max_uses} runs")
            await self.driver.reset(sandbox_id=sandbox_id)
            await self.driver.update(sandbox_id=sandbox_id, limits=self.spec.limits, network=self.spec.network)
        except Exception as exc:  # noqa: BLE001 - the sandbox is replaced, not reused
            logger.info("pools.recycle %s: replacing %s: %s", self.name, sandbox_id, exc)
            self.discard(sandbox_id)
            return
        finally:
            self._recycling -= 1
        if self._size > self.target and not self._waiters:
            self.discard(sandbox_id)
        else:
            self._offer(sandbox_id)

    async def _shrink(self) -> None:
        while True:
            await asyncio.sleep(min(10.0, self.shrink_after))
            if time.monotonic() - self._last_miss < self.shrink_after or self.target <= self.min_size:
                continue
            self.target -= 1
            self._last_miss = time.monotonic()  # one step per quiet period
            if self._size > self.target and self._ready:
                self.discard(self._ready.pop())

    async def _destroy(self, sandbox_id: str) -> None:
        try:
            await self.driver.destroy(sandbox_id=sandbox_id)
        except Exception:
            logger.exception("pools.destroy.failed %s %s", self.name, sandbox_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def sandbox_pool(driver: base.RuntimeDriver, settings: Settings) -> Pool | None:
    """The warm pool of ``POST /sandboxes``: sandboxes of the ``base`` template with the default
    limits and network policy, the shape most creates ask for (None when sized 0)."""
    server, rt = settings.server, settings.runtime
    if server.pool_max <= 0:
        return None

    def make() -> models.SandboxSpec:
        return models.SandboxSpec(
            sandbox_id=records.new_sandbox_id(),
            limits=rt.default_limits.clamp(rt.max_limits),
            network=models.NetworkPolicy(internet=rt.internet_default),
        )

    return Pool(
        driver, make, name="sandboxes", min_size=min(server.pool_min, server.pool_max),
        max_size=server.pool_max, reuse=False,
    )
