"""A counter that lives only in memory, inside a sandbox, through the e2b SDK: what tells a
sandbox restored from memory from one booted clean."""

from __future__ import annotations

import time

from e2b import CommandExitException, Sandbox

from tests.runtime.test_checkpoint import COUNTER  # served on :8080

__all__ = ["count", "start_counter"]


def start_counter(sbx: Sandbox) -> None:
    sbx.files.write("/home/user/counter.py", COUNTER)
    handle = sbx.commands.run("python3 /home/user/counter.py", background=True)
    handle.disconnect()  # it runs on without anyone attached


def count(sbx: Sandbox, tries: int = 50) -> int:
    """The counter's value, read over HTTP from inside the sandbox."""
    for _ in range(tries):
        try:
            out = sbx.commands.run("curl -sf http://127.0.0.1:8080/", timeout=10)
            return int(out.stdout)
        except (CommandExitException, ValueError):
            time.sleep(0.1)
    raise AssertionError("the counter never answered")
