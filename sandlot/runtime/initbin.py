"""Build, once per source version, the ``sandlot-init`` binary that every sandbox runs as PID 1.

The binary is static so that it runs in any template's root filesystem, whatever libc (or none)
the template holds; it is bind-mounted read-only into each sandbox. It is compiled on the host
from the C source shipped in this package rather than shipped prebuilt, so a wheel stays
architecture-independent. The cache key is the hash of the source: editing the source builds a
new binary beside the old one, and sandboxes still running the old one are left alone.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import subprocess
import tempfile
from pathlib import Path

from sandlot.runtime import errors

__all__ = ["ensure_init_binary"]

_SOURCE = "init/sandlot-init.c"


@functools.cache
def _source_digest() -> str:
    """The source's sha256 (16 hex digits), read once per process to keep the fast path a stat."""
    source = importlib.resources.files("sandlot.runtime").joinpath(_SOURCE).read_bytes()
    return hashlib.sha256(source).hexdigest()[:16]


def ensure_init_binary(cache_dir: Path) -> Path:
    """The path of the compiled init, building it under ``cache_dir/init/<hash>/`` if missing.

    Concurrent callers may both compile; each renames its own complete file into place, so a
    reader never sees a half-written binary.

    Example:
        >>> ensure_init_binary(Path("/var/cache/sandlot"))
        PosixPath('/var/cache/sandlot/init/3f2a.../sandlot-init')

    Raises:
        RuntimeDriverError: the compiler is missing or failed; its stderr is in the message.
    """
    target = cache_dir / "init" / _source_digest() / "sandlot-init"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".sandlot-init.")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with importlib.resources.as_file(importlib.resources.files("sandlot.runtime").joinpath(_SOURCE)) as source:
            result = subprocess.run(
                ["cc", "-O2", "-static", "-o", str(tmp), str(source)],
                capture_output=True,
                text=True,
                check=False,
            )
        if result.returncode != 0:
            raise errors.RuntimeDriverError(
                f"compiling sandlot-init failed (cc exit {result.returncode}):\n{result.stderr}"
            )
        tmp.chmod(0o755)
        os.rename(tmp, target)
    except OSError as exc:
        raise errors.RuntimeDriverError(f"cannot build sandlot-init: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target
