"""The CLI tests use the SDK tests' servers."""

from tests.sdk.conftest import sdk_server, small_server  # noqa: F401 - fixtures, used by name
