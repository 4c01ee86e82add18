"""Outbound traffic policy, tested against a stand-in internet that this test makes
(`tests.internet`): whatever the rules get wrong, no packet can leave this machine."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from sandlot.runtime import models
from sandlot.runtime.drivers.runc import RuncDriver
from tests.internet import CONNECT, METADATA, PRIVATE, PUBLIC, stand_in_internet
from tests.runtime.conftest import SandboxFactory, run


@pytest.fixture(scope="module")
def fake_internet() -> Iterator[None]:
    with stand_in_internet():
        yield


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
    with pytest.raises(ValueError, match=re.escape("network.allow: 'not-an-ip'")):
        models.NetworkPolicy(allow=("not-an-ip",))
    with pytest.raises(ValueError, match=re.escape("network.deny")):
        models.NetworkPolicy(deny=("10.0.0.0/33",))
