"""The CLI tests use the SDK tests' server."""

from tests.sdk.conftest import sdk_server  # noqa: F401 - a fixture, used by name
