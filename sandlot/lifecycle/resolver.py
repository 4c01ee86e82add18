"""The sandbox plane's way in: which sandbox a request names, whether its access token opens
it, and the `target.SandboxTarget` the agent services act on.

A sandbox created with auto-resume is resumed by the first sandbox-plane request that carries
its access token, and then lives as long as it was created to (``timeout``) again. Targets are
kept from one request to the next (a request costs a dict lookup, not two driver calls) until
the sandbox's processes stop (`Resolver.forget`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from sandlot.lifecycle import errors, records
from sandlot.runtime import base, models, target
from sandlot.runtime import errors as runtime_errors

__all__ = ["Resolver"]

logger = logging.getLogger("sandlot.lifecycle.resolver")


class Resolver:
    """A `target.Resolver` over the live sandboxes.

    Args:
        driver: the runtime the sandboxes run in.
        reachable: the live sandbox of an id that the sandbox plane may reach (running, or
            paused with auto-resume); `target.SandboxGone` otherwise.
        wake: resumes a paused sandbox for a request.
    """

    def __init__(
        self,
        driver: base.RuntimeDriver,
        reachable: Callable[[str], records.LiveSandbox],
        wake: Callable[[records.LiveSandbox], Awaitable[object]],
    ) -> None:
        self.driver = driver
        self._reachable = reachable
        self._wake = wake
        self._targets: dict[str, target.SandboxTarget] = {}

    def forget(self, sandbox_id: str) -> None:
        """Drop the target of a sandbox whose processes stopped (paused, restarted, ended)."""
        self._targets.pop(sandbox_id, None)

    async def __call__(self, sandbox_id: str, access_token: str | None) -> target.SandboxTarget:
        sbx = self._reachable(sandbox_id)
        if sbx.secure and (
            access_token is None
            or sbx.access_token is None
            or not hmac.compare_digest(access_token.encode(), sbx.access_token.encode())
        ):
            raise target.TokenRejected(sandbox_id)
        if sbx.state == models.SandboxState.PAUSED:
            try:
                await self._wake(sbx)
            except errors.LifecycleError:
                logger.exception("lifecycle.autoresume.failed %s", sandbox_id)
                raise target.SandboxGone(sandbox_id) from None
        found = self._targets.get(sandbox_id)
        if found is None:
            try:
                info = await self.driver.info(sandbox_id=sandbox_id)
                filesystem = await self.driver.filesystem(sandbox_id=sandbox_id)
            except runtime_errors.RuntimeDriverError:
                raise target.SandboxGone(sandbox_id) from None
            found = target.SandboxTarget(
                sandbox_id=sandbox_id,
                driver=self.driver,
                address=info.address,
                filesystem=filesystem,
                env=sbx.env_vars,
                touch=sbx.touch,
            )
            self._targets[sandbox_id] = found
        return found
