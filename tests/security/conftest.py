"""The escape group runs on the runtime tests' sandboxes: a real runc driver, real sandboxes."""

from tests.runtime.conftest import make_sandbox, sandbox

__all__ = ["make_sandbox", "sandbox"]
