"""The escape group runs on the runtime tests' sandboxes: a real runc driver, real sandboxes."""

from tests.runtime.conftest import make_sandbox, sandbox
from tests.runtime.test_checkpoint import images

__all__ = ["images", "make_sandbox", "sandbox"]
