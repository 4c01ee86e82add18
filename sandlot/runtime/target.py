"""What the sandbox plane needs to know about the sandbox a request names.

The api layer's sandbox-plane routes receive a `Resolver` from whoever assembles the app (the
lifecycle layer knows which sandboxes exist, whom they belong to and their access tokens);
the agent services act on the `SandboxTarget` it returns.

The contract lives here, below both sides (it holds only runtime values), so that lifecycle,
which resolves, and agent, which acts, import neither each other nor anything above them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Protocol

from sandlot.runtime import base, models

__all__ = ["Resolver", "SandboxGone", "SandboxTarget", "TokenRejected"]


@dataclasses.dataclass(frozen=True)
class SandboxTarget:
    sandbox_id: str
    driver: base.RuntimeDriver
    address: str
    """The sandbox's IP address, for reaching services its processes listen on."""
    filesystem: models.HostFilesystem
    default_user: str = "user"
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    touch: Callable[[], None] = lambda: None
    """Record activity on the sandbox (for idle timeouts)."""


class SandboxGone(Exception):
    """The sandbox does not exist, is not running, or is not the caller's: 502 "The sandbox
    was not found", as E2B answers."""


class TokenRejected(Exception):
    """The access token is missing or wrong for this sandbox: 401."""


class Resolver(Protocol):
    async def __call__(self, sandbox_id: str, access_token: str | None) -> SandboxTarget: ...
