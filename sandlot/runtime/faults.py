"""A test hook: crash the daemon at a named point, to test what the next start makes of it.

With ``SANDLOT_CRASH_AT=pause.dumped`` in its environment the process SIGKILLs itself the
first time it reaches the point of that name, as an operator's ``kill -9`` or the OOM killer
would at the worst moment. Points are named ``<operation>.<what is done by then>`` (the list
is in tests/api/test_crash.py, which crashes at every one). The variable is read once; unset,
a point costs a string comparison. Nothing but tests should set it.
"""

from __future__ import annotations

import functools
import logging
import os
import signal

__all__ = ["crash_point"]

logger = logging.getLogger("sandlot.runtime.faults")


@functools.cache
def _armed() -> str:
    return os.environ.get("SANDLOT_CRASH_AT", "")


def crash_point(name: str) -> None:
    """SIGKILL this process if ``SANDLOT_CRASH_AT`` names this point."""
    if name == _armed():
        logger.warning("faults.crash %s: SIGKILL (SANDLOT_CRASH_AT)", name)
        os.kill(os.getpid(), signal.SIGKILL)
