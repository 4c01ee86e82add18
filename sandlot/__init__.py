"""sandlot: a self-hostable sandbox platform.

The package root is the SDK's front door: everything in ``__all__`` is supported API, anything
else may change without notice.

Example:
    >>> from sandlot import Sandbox, AsyncSandbox, SandlotError
    >>> with Sandbox.create() as sbx:
    ...     sbx.commands.run("echo hi").stdout
    'hi\\n'
"""

__version__ = "0.1.0"

from sandlot import sdk  # after __version__: the SDK reads it for its User-Agent
from sandlot.sdk import *  # noqa: F403 - the SDK's own __all__ is the front door's

__all__ = [*sdk.__all__, "__version__"]
