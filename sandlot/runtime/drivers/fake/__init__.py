"""`FakeDriver`: the driver contract held in memory, for the lifecycle state machine's unit tests.

It needs no root, no runc, no CRIU and no network: a sandbox is a record in a dict and a
directory under ``data_dir`` (its root filesystem, for `filesystem` and `put_files`), and its
processes are a model of five commands (`processes`). Its states follow `RuncDriver`'s rules
and raise the same errors in the same cases (a checkpoint of a checkpointed sandbox, a restore
of a running one, a process started in a paused one, an id it does not hold...), so that the
manager's state machine can be tested on it in milliseconds
(tests/lifecycle/test_state_machine.py). tests/runtime/test_driver_contract.py runs the same
rules on both drivers, so that the fake cannot drift from runc.

What a checkpoint, fork or snapshot keeps of the processes (their "memory") is written as JSON
into the directory the caller names, and a restore reads it back: the snapshot store sees an
image, and a checkpoint removed under a paused sandbox makes its restore fail, as with CRIU.

It is not a sandbox and shows nothing that only runc can: no process runs, nothing is isolated
or limited, no stream survives anything, and a crash in the middle of an operation is not
modelled. Those are tested on the real driver (tests/runtime, tests/api). It is not registered
as a ``sandlot.runtime_drivers`` entry point, so that no setting can start a server on it:
tests import it.

Example:
    >>> driver = FakeDriver(settings.runtime)
    >>> manager = SandboxManager(driver, database, settings)
    >>> driver.fail_next("restore")  # the next restore raises RuntimeDriverError
"""

from sandlot.runtime.drivers.fake.driver import FakeDriver

__all__ = ["FakeDriver"]
