"""Warm pools (`sandlot.lifecycle.pools`) on the session's real runc driver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from sandlot.lifecycle import pools
from sandlot.runtime import models
from sandlot.runtime.drivers.runc import RuncDriver
from tests.runtime.conftest import new_id, run

PoolMaker = Callable[..., pools.Pool]


@pytest.fixture
async def make_pool(driver: RuncDriver) -> AsyncIterator[PoolMaker]:
    made: list[pools.Pool] = []

    def make(template: str = "runner", runner: bool = True, **kw: object) -> pools.Pool:
        def spec() -> models.SandboxSpec:
            return models.SandboxSpec(
                sandbox_id=new_id(), template=template, runner=runner,
                limits=models.Limits(disk_mb=64), network=models.NetworkPolicy(internet=False),
            )

        kw.setdefault("reuse", runner)
        pool = pools.Pool(driver, spec, name="test", **kw)  # type: ignore[arg-type]
        pool.start()
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.aclose()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the pool did not get there in time"
        await asyncio.sleep(0.02)


async def test_a_claim_pool_hands_out_and_refills(driver: RuncDriver, make_pool: PoolMaker) -> None:
    pool = make_pool(template="base", runner=False, min_size=2, max_size=2)
    await until(lambda: pool.stats().ready == 2)
    claimed = [pool.take_nowait(), pool.take_nowait()]
    assert None not in claimed and len(set(claimed)) == 2
    try:
        assert pool.take_nowait() is None, "two taken, none ready: a miss"
        assert (await run(driver, claimed[0], "echo", "mine")).stdout == "mine\n"
        await until(lambda: pool.stats().ready == 2)
        with pytest.raises(ValueError):
            pool.give_back(claimed[0])
    finally:
        for sid in claimed:
            await driver.destroy(sandbox_id=sid)  # claimed sandboxes are the claimer's


async def test_a_reuse_pool_resets_between_takes(driver: RuncDriver, make_pool: PoolMaker) -> None:
    pool = make_pool(min_size=1, max_size=1, max_waiting=4, wait_timeout=10)
    first = await pool.take()
    await run(driver, first, "sh", "-c", "echo secret > /tmp/left; echo secret > ~/left")
    await driver.update(sandbox_id=first, limits=models.Limits(memory_mb=64, disk_mb=64))
    pool.give_back(first)
    again = await pool.take()
    assert again == first, "a pool of one hands out the same sandbox, reset"
    seen = await run(driver, again, "sh", "-c", "ls /tmp ~")
    assert "left" not in seen.stdout
    assert (await driver.stats(sandbox_id=again)).memory_limit_bytes == 512 << 20, "limits put back"
    pool.give_back(again)


async def test_waiting_is_bounded_in_length_and_time(make_pool: PoolMaker) -> None:
    pool = make_pool(min_size=1, max_size=1, max_waiting=1, wait_timeout=0.5)
    held = await pool.take()
    waiting = asyncio.ensure_future(pool.take())
    await asyncio.sleep(0.05)
    with pytest.raises(pools.PoolFull):
        await pool.take()
    started = time.monotonic()
    with pytest.raises(pools.PoolBusy):
        await waiting
    assert 0.3 < time.monotonic() - started < 1.0
    # First come, first served: a give back goes to the one waiting.
    later = asyncio.ensure_future(pool.take())
    await asyncio.sleep(0.05)
    pool.give_back(held)
    assert await later == held
    pool.give_back(held)


async def test_a_take_cancelled_after_it_was_served_gives_the_sandbox_on(make_pool: PoolMaker) -> None:
    pool = make_pool(min_size=1, max_size=1, max_waiting=2, wait_timeout=10)
    held = await pool.take()
    impatient = asyncio.ensure_future(pool.take())
    patient = asyncio.ensure_future(pool.take())
    await asyncio.sleep(0.05)
    impatient.cancel()
    pool.give_back(held)
    assert await patient == held
    pool.give_back(held)


async def test_a_pool_that_cannot_make_sandboxes_says_so(make_pool: PoolMaker) -> None:
    pool = make_pool(template="no-such-template", min_size=2, max_size=2, max_waiting=4, wait_timeout=30)
    started = time.monotonic()
    with pytest.raises(pools.PoolBroken, match="no-such-template"):
        await pool.take()
    assert time.monotonic() - started < 10, "a broken pool fails fast, not at the wait timeout"
    stats = pool.stats()
    assert not stats.healthy and "no-such-template" in (stats.last_error or "")
    with pytest.raises(pools.PoolBroken):
        await pool.take()


async def test_the_pool_grows_with_misses_and_shrinks_when_quiet(driver: RuncDriver, make_pool: PoolMaker) -> None:
    pool = make_pool(min_size=0, max_size=3, max_waiting=8, wait_timeout=10, shrink_after=0.5)
    assert pool.stats().target == 0
    taken = await asyncio.gather(pool.take(), pool.take(), pool.take())
    assert len(set(taken)) == 3 and pool.stats().target == 3
    for sid in taken:
        pool.give_back(sid)
    await until(lambda: pool.stats().ready == 3)
    await until(lambda: pool.stats().target == 0 and pool.stats().ready == 0, timeout=40)
    for _ in range(100):  # destroys run in the background
        if not {i.sandbox_id for i in await driver.list()} & set(taken):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("sandboxes above the target are destroyed")


async def test_closing_destroys_everything_the_pool_holds(driver: RuncDriver, make_pool: PoolMaker) -> None:
    pool = make_pool(min_size=2, max_size=2, max_waiting=1, wait_timeout=10)
    busy = await pool.take()
    await until(lambda: pool.stats().ready == 1)
    await pool.aclose()
    assert busy not in {i.sandbox_id for i in await driver.list()}
    with pytest.raises(pools.PoolBroken, match="closing"):
        await pool.take()


async def test_a_sandbox_being_reset_is_no_reason_to_grow(make_pool: PoolMaker) -> None:
    pool = make_pool(min_size=1, max_size=3, max_waiting=4, wait_timeout=10)
    await until(lambda: pool.stats().ready == 1)
    for _ in range(5):
        sid = await pool.take()
        pool.give_back(sid)  # the next take finds it still being reset: it waits for it
    await until(lambda: pool.stats().ready == 1)
    assert pool.stats().target == 1, "back-to-back runs are served by the one sandbox"
