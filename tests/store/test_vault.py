"""The vault: the server's secret key in a private file, and values sealed for one row."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandlot.store import vault


def test_the_key_is_made_once_and_private(tmp_path: Path) -> None:
    first = vault.Vault.open(tmp_path)
    path = tmp_path / vault.KEY_FILE
    assert (os.stat(path).st_mode & 0o777, os.stat(path).st_uid) == (0o600, os.geteuid())
    sealed = first.seal({"A": "1"}, row="sandboxes/x/env_vars")
    assert vault.Vault.open(tmp_path).unseal(sealed, row="sandboxes/x/env_vars") == {"A": "1"}, (
        "a second open reads the same key"
    )


def test_a_key_file_others_can_read_is_made_private(tmp_path: Path) -> None:
    vault.Vault.open(tmp_path)
    path = tmp_path / vault.KEY_FILE
    path.chmod(0o644)
    vault.Vault.open(tmp_path)
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_sealed_value_opens_only_for_its_row_and_key(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    key = vault.Vault.open(tmp_path / "a")
    sealed = key.seal("secret-token", row="sandboxes/one/access_token")
    assert "secret-token" not in sealed
    assert key.seal("secret-token", row="sandboxes/one/access_token") != sealed, "a fresh nonce each time"
    with pytest.raises(vault.VaultError, match="sandboxes/two/access_token does not open"):
        key.unseal(sealed, row="sandboxes/two/access_token")
    (tmp_path / "b").mkdir()
    other = vault.Vault.open(tmp_path / "b")
    with pytest.raises(vault.VaultError, match="another secret key"):
        other.unseal(sealed, row="sandboxes/one/access_token")
    with pytest.raises(vault.VaultError):
        key.unseal("clear text", row="sandboxes/one/access_token")


def test_a_damaged_key_file_is_named(tmp_path: Path) -> None:
    (tmp_path / vault.KEY_FILE).write_text("not hex\n")
    (tmp_path / vault.KEY_FILE).chmod(0o600)
    with pytest.raises(vault.VaultError, match="does not hold a key"):
        vault.Vault.open(tmp_path)
