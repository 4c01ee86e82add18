"""The sandbox I/O pool (`sandlot.agent.iopool`) on its own, with real threads and a real FIFO.

Calls that never finish hold only their own sandbox's slots: another sandbox's call still
answers at once, the stuck sandbox's next call gets DeadlineExceeded, and a process whose pool
threads are stuck in ``open()`` on a FIFO still exits.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sandlot._wire import errors as wire
from sandlot.agent import iopool


def test_a_stuck_sandbox_holds_only_its_own_slots() -> None:
    release = threading.Event()

    async def main() -> None:
        pool = iopool.IOPool(workers=8, per_sandbox=2, timeout=30)
        loop = asyncio.get_running_loop()
        stuck = [asyncio.ensure_future(pool.run("a", release.wait)) for _ in range(2)]
        await asyncio.sleep(0.1)
        started = loop.time()
        assert await pool.run("b", lambda: "b answers") == "b answers"
        assert loop.time() - started < 1.0
        with pytest.raises(wire.DeadlineExceeded, match="already has 2 file operations"):
            await pool.run("a", lambda: "never", deadline=loop.time() + 0.3)
        with pytest.raises(wire.DeadlineExceeded, match="did not finish"):
            await pool.run("b", lambda: time.sleep(1), deadline=loop.time() + 0.2)
        assert pool.busy("a") == 2
        release.set()
        assert await asyncio.gather(*stuck) == [True, True]
        assert await pool.run("a", lambda: "a again") == "a again"
        with pytest.raises(ZeroDivisionError):
            await pool.run("a", lambda: 1 / 0)

    asyncio.run(main())


def test_threads_stuck_on_a_fifo_never_keep_the_process_alive(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = f"""
import asyncio, os
from sandlot._wire import errors as wire
from sandlot.agent import iopool

async def main():
    pool = iopool.IOPool(timeout=0.5)
    try:
        await pool.run("a", lambda: os.open({str(fifo)!r}, os.O_RDONLY))
    except wire.DeadlineExceeded:
        print("deadline", flush=True)

asyncio.run(main())
"""
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "deadline\n"
    assert time.monotonic() - started < 10
