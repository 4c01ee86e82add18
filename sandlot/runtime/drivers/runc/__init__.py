"""The local driver: each sandbox is an OCI bundle run by runc.

Layout under ``data_dir`` (one directory per sandbox, so that destroy and reconcile can find
every piece from the id alone)::

    runc/                      runc's --root: container state of this instance only, and
                               criu.conf with criu-yard/, CRIU's options (`criu.write_config`)
    sandboxes/ID/state.json    what the driver needs to find, talk to and remove the sandbox
    sandboxes/ID/disk.img      sparse ext4 image: the disk limit (see sandlot.runtime.disk)
    sandboxes/ID/disk/         its mount point, holding upper/ and work/ of the overlay
    sandboxes/ID/bundle/       config.json and rootfs/, the overlay's mount point
    sandboxes/ID/container.json  runc's state of its container while it is checkpointed

A sandbox's PID 1 is sandlot-init (``sandlot/runtime/init/``), which reaps zombies and starts
processes on request over TCP at the sandbox's address: processes are started inside the
sandbox's process tree, not by ``runc exec`` from outside, so starting one costs a round trip
instead of a runc invocation, and nothing a process holds leads out of the sandbox (which is
what CRIU needs to checkpoint it). The token that opens init is handed over on a pipe
(``--preserve-fds``) and lives in state.json (mode 0600), never in the sandbox.

The daemon is the child subreaper of everything it starts: runc exits after starting a
container, so each container's init becomes our child and is reaped here (`_utils.wait_pid`).

The modules, each a layer of `RuncDriver` or what a layer uses:

    driver.py     RuncDriver: the RuntimeDriver protocol, restart, open and close
    core.py       its state, runc commands, init's reaper and veth, teardown
    bundle.py     template build, disk, overlay root, OCI bundle, booting init
    criu.py       checkpoint, restore, fork, snapshot; CRIU's options
    reconcile.py  making the host agree with the records after a crash
    state.py      state.json and runc's container state on disk
    host.py       subreaper, /proc, filesystem freezes, sparse copies, IPC cleanup
"""

from __future__ import annotations

from sandlot.runtime.drivers.runc.driver import RuncDriver

__all__ = ["RuncDriver"]
