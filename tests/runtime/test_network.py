"""Outbound traffic policy, tested against a stand-in internet that this test makes.

The "internet" is a network namespace of the test's own, wired to the host by a veth, holding
a documentation address (203.0.113.1), a private one (192.168.251.1) and the cloud metadata
address (169.254.169.254), each routed from the host into that namespace. Whatever the rules
get wrong, no packet can leave this machine.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from sandlot.runtime import models
from sandlot.runtime.drivers.runc import RuncDriver

from tests.runtime.conftest import SandboxFactory, run
from tests.runtime.test_isolation import CONNECT, SERVE

PUBLIC, PRIVATE, METADATA = "203.0.113.1", "192.168.251.1", "169.254.169.254"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def fake_internet() -> Iterator[None]:
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


async def _reach(driver: RuncDriver, sandbox: str, address: str) -> bool:
    out = (await run(driver, sandbox, "python3", "-c", CONNECT, address, "80", "1.0")).stdout
    assert out.startswith(("connected", "blocked")), out
    return out.startswith("connected hi")


@pytest.mark.usefixtures("fake_internet")
@pytest.mark.parametrize(
    ("policy", "public", "private", "metadata"),
    [
        (models.NetworkPolicy(internet=True), True, False, False),
        (models.NetworkPolicy(internet=False), False, False, False),
        (models.NetworkPolicy(internet=True, deny=("203.0.113.0/24",)), False, False, False),
        (models.NetworkPolicy(internet=False, allow=("203.0.113.1",)), True, False, False),
        (models.NetworkPolicy(internet=True, allow=("192.168.251.0/24",)), True, True, False),
        (models.NetworkPolicy(internet=True, allow=("0.0.0.0/0",), deny=("203.0.113.1/32",)), True, True, False),
    ],
    ids=["internet", "no-internet", "deny-list", "allow-list-only", "allow-private", "allow-wins-over-deny"],
)
async def test_egress_policy(
    driver: RuncDriver,
    make_sandbox: SandboxFactory,
    policy: models.NetworkPolicy,
    public: bool,
    private: bool,
    metadata: bool,
) -> None:
    sid = await make_sandbox(network=policy)
    assert await _reach(driver, sid, PUBLIC) is public
    assert await _reach(driver, sid, PRIVATE) is private
    assert await _reach(driver, sid, METADATA) is metadata


def test_bad_cidrs_are_refused() -> None:
    with pytest.raises(ValueError, match="network.allow: 'not-an-ip'"):
        models.NetworkPolicy(allow=("not-an-ip",))
    with pytest.raises(ValueError, match="network.deny"):
        models.NetworkPolicy(deny=("10.0.0.0/33",))
