"""A stand-in internet for egress tests, made by the test itself: no packet leaves this machine.

It is a network namespace of the test run's own, wired to the host by a veth, holding a
documentation address (203.0.113.1), a private one (192.168.251.1) and the cloud metadata
address (169.254.169.254), each routed from the host into that namespace, with a TCP service
on port 80 of each that answers ``hi``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator

__all__ = ["CONNECT", "METADATA", "PRIVATE", "PUBLIC", "SERVE", "stand_in_internet"]

PUBLIC, PRIVATE, METADATA = "203.0.113.1", "192.168.251.1", "169.254.169.254"

SERVE = """
import socket, sys
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
while True:
    c, _ = s.accept()
    c.send(b"hi")
    c.close()
"""

CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]) if len(sys.argv) > 3 else 1.0)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected", s.recv(64).decode())
except OSError as e:
    print("refused" if isinstance(e, ConnectionRefusedError) else "blocked", type(e).__name__)
"""
"""``python3 -c CONNECT ADDRESS PORT [TIMEOUT]`` prints ``connected hi``, ``refused ...`` or ``blocked ...``."""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def stand_in_internet() -> Iterator[None]:
    """The stand-in internet, for one test at a time on this host: its addresses and routes
    are fixed, so two test runs side by side would trip over each other's (EEXIST)."""
    with open(os.path.join(tempfile.gettempdir(), "sandlot-stand-in-internet.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with _stand_in_internet():
            yield


@contextlib.contextmanager
def _stand_in_internet() -> Iterator[None]:
    ns, veth = f"sandlot-fakenet-{os.getpid()}", f"fkn{os.getpid() % 100000}"
    server = None
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("addr", "add", "203.0.113.254/24", "dev", veth)
        _ip("link", "set", veth, "up")
        for address in (f"{PUBLIC}/24", f"{PRIVATE}/32", f"{METADATA}/32"):
            _ip("-n", ns, "addr", "add", address, "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "route", "add", "default", "via", "203.0.113.254")
        for address in (PRIVATE, METADATA):
            _ip("route", "add", f"{address}/32", "dev", veth)
        server = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", SERVE, "80"])
        time.sleep(0.3)
        yield
    finally:
        if server is not None:
            server.kill()
            server.wait()
        for address in (PRIVATE, METADATA):
            subprocess.run(["ip", "route", "del", f"{address}/32", "dev", veth], capture_output=True)
        subprocess.run(["ip", "link", "delete", veth], capture_output=True)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    assert not os.path.exists(f"/var/run/netns/{ns}")
    assert not os.path.exists(f"/sys/class/net/{veth}")
