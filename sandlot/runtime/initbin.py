"""Build, once per source version, the ``sandlot-init`` binary that every sandbox runs as PID 1.

The binary is static so that it runs in any template's root filesystem, whatever libc (or none)
the template holds; it is bind-mounted read-only into each sandbox. It is compiled on the host
from the C sources shipped in this package (``init/``: ``main.c`` picks PID 1, ``init.c``, or
the network hook, ``nethook.c``) rather than shipped prebuilt, so a wheel stays
architecture-independent. The cache key is the hash of every source file, names and contents,
and the compiler is given exactly the files hashed: editing any of them builds a new binary
beside the old one, and sandboxes still running the old one are left alone.
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


@functools.cache
def _sources() -> dict[str, bytes]:
    """Every C source and header of ``init/`` by name, read once per process."""
    sources = importlib.resources.files("sandlot.runtime").joinpath("init")
    return {
        entry.name: entry.read_bytes()
        for entry in sorted(sources.iterdir(), key=lambda e: e.name)
        if entry.name.endswith((".c", ".h"))
    }


@functools.cache
def _source_digest() -> str:
    """The sources' sha256 (16 hex digits), computed once per process to keep the fast path a
    stat. Each file adds its name, its length and its bytes, so no two sets hash alike."""
    digest = hashlib.sha256()
    for name, data in _sources().items():
        digest.update(b"%s\0%d\0%s" % (name.encode(), len(data), data))
    return digest.hexdigest()[:16]


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
        with tempfile.TemporaryDirectory(prefix=".sandlot-init-src.", dir=target.parent) as src:
            for name, data in _sources().items():
                (Path(src) / name).write_bytes(data)
            units = [str(Path(src) / name) for name in _sources() if name.endswith(".c")]
            result = subprocess.run(
                ["cc", "-O2", "-static", "-o", str(tmp), *units],
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
