"""Where the SDK connects and with which key: explicit arguments first, then the environment.

Only two variables are read, and only here, when a constructor is not given the value:

* ``SANDLOT_API_URL``: the server (default ``http://127.0.0.1:3000``, what ``sandlot serve``
  listens on).
* ``SANDLOT_API_KEY``: the team API key.

sandlot serves the control plane and the sandbox plane on one port, so the sandbox plane's base
URL defaults to the API URL and each request names its sandbox by the ``E2b-Sandbox-Id`` and
``E2b-Sandbox-Port`` headers (docs/e2b-wire.md §1.2, §3); ``sandbox_url`` overrides it for
deployments that split the two.

A control-plane request that gets a 429 is tried again up to ``retries`` times, waiting what
its ``Retry-After`` asks (see :mod:`sandlot.sdk._core.retry`), before
:class:`~sandlot.RateLimitedError` reaches the caller.

Example:
    >>> ConnectionConfig.from_env({"SANDLOT_API_KEY": "e2b_00"}, api_url="http://h:1")
    ConnectionConfig(api_url='http://h:1', api_key='e2b_00', sandbox_url=None, request_timeout=60.0, retries=3)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from sandlot import __version__
from sandlot.sdk import exceptions
from sandlot.sdk._core import retry

__all__ = ["DEFAULT_API_URL", "ENVD_PORT", "ConnectionConfig", "resolve_config"]

DEFAULT_API_URL = "http://127.0.0.1:3000"
ENVD_PORT = 49983  # the port e2b clients name in E2b-Sandbox-Port; sandlot routes on the id
USER_AGENT = f"sandlot-python-sdk/{__version__}"


@dataclasses.dataclass(frozen=True)
class ConnectionConfig:
    """How to reach a sandlot server.

    Attributes:
        api_url: Base URL of the control plane.
        api_key: The team API key, sent as ``X-API-Key``.
        sandbox_url: Base URL of the sandbox plane; None means ``api_url``.
        request_timeout: Seconds for one request (connect, read, write); 0 or None waits forever.
        retries: How many more times a control-plane request answered 429 is sent, after
            waiting its ``Retry-After`` (at most 10 s each); 0 raises the first 429.

    Example:
        >>> config = ConnectionConfig.from_env()
        >>> config.api_url
        'http://127.0.0.1:3000'
    """

    api_url: str = DEFAULT_API_URL
    api_key: str | None = None
    sandbox_url: str | None = None
    request_timeout: float | None = 60.0
    retries: int = 3

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        sandbox_url: str | None = None,
        request_timeout: float | None = 60.0,
        retries: int = 3,
    ) -> ConnectionConfig:
        """A config from explicit arguments, falling back on ``SANDLOT_API_URL``/``SANDLOT_API_KEY``.

        Args:
            environ: The environment to read; ``os.environ`` if None (tests pass a dict).
            api_url: Wins over ``SANDLOT_API_URL``.
            api_key: Wins over ``SANDLOT_API_KEY``.
            sandbox_url: Base URL of the sandbox plane, if not the API URL.
            request_timeout: Seconds for one request.
            retries: How many times a 429 is retried.

        Example:
            >>> ConnectionConfig.from_env({"SANDLOT_API_URL": "http://10.0.0.1:3000/"}).api_url
            'http://10.0.0.1:3000'
        """
        env = os.environ if environ is None else environ
        url = (api_url or env.get("SANDLOT_API_URL") or DEFAULT_API_URL).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise exceptions.InvalidArgumentError(f"SANDLOT_API_URL must be an http(s) URL, not {url!r}")
        return cls(
            api_url=url,
            api_key=api_key or env.get("SANDLOT_API_KEY") or None,
            sandbox_url=sandbox_url.rstrip("/") if sandbox_url else None,
            request_timeout=request_timeout,
            retries=retries,
        )

    def retry_policy(self) -> retry.RetryPolicy:
        """The retry policy of this server's control-plane requests."""
        return retry.RetryPolicy(retries=max(0, self.retries))

    def api_headers(self) -> dict[str, str]:
        """Headers of every control-plane request.

        Raises:
            AuthenticationError: if there is no API key, before anything is sent.
        """
        if not self.api_key:
            raise exceptions.AuthenticationError(
                "no API key: pass api_key= or set SANDLOT_API_KEY (sandlot keys create prints one)"
            )
        return {"X-API-Key": self.api_key, "User-Agent": USER_AGENT}

    def sandbox_base_url(self) -> str:
        """Base URL of the sandbox plane."""
        return self.sandbox_url or self.api_url

    @staticmethod
    def sandbox_headers(sandbox_id: str, access_token: str | None) -> dict[str, str]:
        """Headers naming the sandbox (and proving access to it) on every sandbox-plane request.

        Example:
            >>> ConnectionConfig.sandbox_headers("s1", None)["E2b-Sandbox-Port"]
            '49983'
        """
        headers = {"E2b-Sandbox-Id": sandbox_id, "E2b-Sandbox-Port": str(ENVD_PORT), "User-Agent": USER_AGENT}
        if access_token:
            headers["X-Access-Token"] = access_token
        return headers


def resolve_config(
    config: ConnectionConfig | None, api_url: str | None, api_key: str | None, request_timeout: float | None
) -> ConnectionConfig:
    """The config a public call means: ``config`` whole when given, else one from the other three
    and the environment. None for ``request_timeout`` is the public default, 60 s (0 waits forever).

    Example:
        >>> resolve_config(None, "http://h:1", "e2b_00", None).request_timeout
        60.0
    """
    if config is not None:
        return config
    return ConnectionConfig.from_env(
        api_url=api_url, api_key=api_key, request_timeout=60.0 if request_timeout is None else request_timeout
    )
