"""The server's secret key, and the sealing of what the database must not hold in clear.

A sandbox's access token and environment variables (and a snapshot's environment) are
stored sealed: AES-256-GCM under a key kept in ``<data dir>/secret-key`` (mode 0600, made on
first use), with the table, row id and column as associated data, so that a sealed value
copied into another row or column does not open. A copy of the database (a backup, a file
left world-readable, a ``sqlite3`` beside the server) shows none of them without the key.

Why the access token is sealed rather than derived (an HMAC of the secret and the sandbox
id): a derivation cannot give back the tokens issued before it existed, which clients still
hold, and the server must give a token back on every ``connect``; sealed, old and new tokens
are kept alike, and need the same key to read. A server with several API nodes (PostgreSQL)
gives each the same ``secret-key`` file.

Example:
    >>> vault = Vault.open(Path("/var/lib/sandlot"))
    >>> sealed = vault.seal({"GREETING": "hi"}, row="sandboxes/abc/env_vars")
    >>> vault.unseal(sealed, row="sandboxes/abc/env_vars")
    {'GREETING': 'hi'}
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KEY_FILE", "Vault", "VaultError"]

logger = logging.getLogger("sandlot.store.vault")

KEY_FILE = "secret-key"
_PREFIX = "v1:"
"""Marks the format of a sealed value (nonce and ciphertext, base64url), to change it later."""
_NONCE = 12


class VaultError(Exception):
    """A sealed value does not open: another key, another row, or damaged."""


class Vault:
    """Seals JSON values for one row and column of the database, and opens them again."""

    def __init__(self, key: bytes, *, path: Path | None = None) -> None:
        if len(key) != 32:
            raise ValueError("the secret key must be 32 bytes")
        self._aead = AESGCM(key)
        self.path = path
        """The key's file, to name in errors."""

    @classmethod
    def open(cls, data_dir: Path) -> Vault:
        """The key of ``data_dir``, made (32 random bytes, hex) when there is none yet; a key
        file others could read is made private again, with a warning."""
        path = data_dir / KEY_FILE
        if not path.exists():
            _create(path)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd) as f:
            if os.fstat(fd).st_mode & 0o077:
                logger.warning("vault: %s was readable by others: made 0600 (rotate it if it leaked)", path)
                os.fchmod(fd, 0o600)
            text = f.read().strip()
        try:
            return cls(bytes.fromhex(text), path=path)
        except ValueError:
            raise VaultError(f"{path} does not hold a key (64 hex digits)") from None

    def seal(self, value: Any, *, row: str) -> str:
        """``value`` (anything JSON holds) sealed for ``row``, e.g. ``sandboxes/<id>/env_vars``."""
        nonce = secrets.token_bytes(_NONCE)
        data = self._aead.encrypt(nonce, json.dumps(value, separators=(",", ":")).encode(), row.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + data).decode()

    def unseal(self, sealed: str, *, row: str) -> Any:
        """The value `seal` was given for ``row``; `VaultError` when it does not open."""
        try:
            if not sealed.startswith(_PREFIX):
                raise ValueError("not a sealed value")
            raw = base64.urlsafe_b64decode(sealed[len(_PREFIX) :])
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], row.encode())
            return json.loads(plain)
        except (ValueError, InvalidTag):
            raise VaultError(
                f"{row} does not open with the key in {self.path or 'this vault'}: was the "
                "database written with another secret key?"
            ) from None


def _create(path: Path) -> None:
    """Write a new key to ``path`` whole or not at all; a concurrent first start (the server
    and ``sandlot keys``) keeps whichever key was linked first."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    # The key must outlive a power cut once a row is sealed with it.
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
