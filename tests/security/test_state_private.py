"""Issue 11, item 4: the server's state is private.

The database, its WAL and shared memory, and the secret key are root's alone; checkpoint and
snapshot images are readable by nobody but root and the gid a sandbox's root maps to (CRIU
restores from inside the sandbox's user namespace: `sandlot.runtime.images.seal`); no access
token or environment value is in the database's files in clear, also after an old database
(secrets in clear) is upgraded, and its sandboxes go on working with the tokens their clients
hold; ``GET /health`` without a key says only ``ok``.

One real `sandlot serve` for the module (its own data dir, runc instance and subnet), the e2b
SDK as the client, real SQLite files read byte by byte.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from e2b import Sandbox

from sandlot.runtime.drivers.runc import RuncDriver
from sandlot.store import db, vault
from tests import conftest, slot
from tests._support.server import Server, serving

pytestmark = conftest.needs_criu


@pytest.fixture(scope="module")
def server(data_root: Path, driver: RuncDriver) -> Iterator[Server]:
    """The module's server; it asks for `driver` so that the driver's census runs after it."""
    pools = {"SANDLOT_POOL_MAX": "0", "SANDLOT_EXECUTE_POOL_MIN": "0", "SANDLOT_EXECUTE_POOL_MAX": "1"}
    with serving(data_root / "state", f"t{os.getpid()}v", slot.subnet(230), pools) as srv:
        yield srv


@pytest.fixture(scope="module", autouse=True)
def _server_before_census(server: Server) -> None:
    """The conftest's, for this module's own `server`: a session-scoped one cannot ask for it."""


@pytest.fixture
def e2b(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The e2b SDK pointed at the server; the ids of the sandboxes a test makes, killed after."""
    for name in ("E2B_API_URL", "E2B_SANDBOX_URL"):
        monkeypatch.setenv(name, server.url)
    monkeypatch.setenv("E2B_API_KEY", server.key)
    made: list[str] = []
    yield made
    with server.client() as client:
        for sid in made:
            client.delete(f"/sandboxes/{sid}")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _db_bytes(server: Server) -> bytes:
    """Every byte of the database's files (the database, its WAL, its shared memory)."""
    return b"".join(p.read_bytes() for p in sorted(server.data_dir.glob("sandlot.db*")))


def test_the_database_and_the_secret_key_are_root_only(server: Server, e2b: list[str]) -> None:
    e2b.append(Sandbox.create(timeout=60, envs={"A": "b"}).sandbox_id)  # a write: the WAL is in use
    files = ["sandlot.db", "sandlot.db-wal", "sandlot.db-shm", vault.KEY_FILE, "api-key"]
    found = {
        name: (oct(_mode(p)), os.lstat(p).st_uid) if (p := server.data_dir / name).exists() else None for name in files
    }
    assert found == dict.fromkeys(files, (oct(0o600), 0))


def _private_tree(top: Path) -> list[str]:
    """What under ``top`` others may read or enter, or its group may write or enter as a
    file (each as ``path mode``): nothing, for checkpoint and snapshot images."""
    wrong = []
    for path in [top, *top.rglob("*")]:
        mode, st = _mode(path), os.lstat(path)
        too_open = mode & 0o007 or (not path.is_dir() and mode & 0o030) or st.st_uid != 0
        if too_open:
            wrong.append(f"{path.relative_to(top)} {mode:o} uid {st.st_uid}")
    return wrong


def test_checkpoint_and_snapshot_images_are_private(server: Server, e2b: list[str]) -> None:
    sbx = Sandbox.create(timeout=120)
    e2b.append(sbx.sandbox_id)
    sbx.commands.run("echo kept > /home/user/kept.txt")
    with server.client() as client:
        answer = client.post(f"/sandboxes/{sbx.sandbox_id}/snapshots", json={"name": "private-images"})
        assert answer.status_code == 201, answer.text
        snapshots = server.data_dir / "snapshots" / "named"
        taken = [d for d in snapshots.iterdir() if (d / "memory").is_dir()]
        assert len(taken) == 1 and list((taken[0] / "memory").glob("pages-*.img"))
        assert client.post(f"/sandboxes/{sbx.sandbox_id}/pause").status_code == 204
        checkpoints = server.data_dir / "snapshots" / sbx.sandbox_id
        assert list(checkpoints.glob("*/pages-*.img")), "the pause wrote its memory images here"
        assert _private_tree(checkpoints) == []
        assert _private_tree(taken[0]) == []
        # The images still restore: the pause's, and the snapshot's into a new sandbox.
        resumed = Sandbox.connect(sbx.sandbox_id, timeout=60)
        assert resumed.commands.run("cat /home/user/kept.txt").stdout == "kept\n"
        copy = Sandbox.create(template="private-images:v1", timeout=60)
        e2b.append(copy.sandbox_id)
        assert copy.commands.run("cat /home/user/kept.txt").stdout == "kept\n"
        assert client.delete("/templates/private-images").status_code == 204


def test_the_database_holds_no_token_or_env_value_in_clear(server: Server, e2b: list[str]) -> None:
    value = f"env-value-{secrets.token_hex(8)}"
    sbx = Sandbox.create(timeout=120, envs={"STATE_SECRET": value})
    e2b.append(sbx.sandbox_id)
    tokens = [sbx._envd_access_token]
    with server.client() as client:
        forked = client.post(f"/sandboxes/{sbx.sandbox_id}/fork", json={"count": 1})
        assert forked.status_code == 201, forked.text
        child = forked.json()[0]["sandbox"]
        e2b.append(child["sandboxID"])
        tokens.append(child["envdAccessToken"])
        answer = client.post(f"/sandboxes/{sbx.sandbox_id}/snapshots", json={"name": "clear-env"})
        assert answer.status_code == 201, answer.text
        try:
            found = _db_bytes(server)
            assert all(token and len(token) >= 32 for token in tokens)
            for secret in (value, *tokens):
                assert secret.encode() not in found, f"{secret!r} is in the database's files"
            # and the server still knows them all
            assert sbx.commands.run("echo $STATE_SECRET").stdout == f"{value}\n"
            again = client.post(f"/sandboxes/{child['sandboxID']}/connect", json={"timeout": 60}).json()
            assert again["envdAccessToken"] == child["envdAccessToken"]
            copy = Sandbox.create(template="clear-env:v1", timeout=60)
            e2b.append(copy.sandbox_id)
            assert copy.commands.run("echo $STATE_SECRET").stdout == f"{value}\n"
        finally:
            client.delete("/templates/clear-env")


def _make_old(server: Server) -> None:
    """Make the stopped server's state what a server before this change left: database schema
    0002 with tokens and environments in clear, its files 0644; checkpoint images root:root
    0644 in directories 0755."""
    database = db.Database(db.sqlite_url(server.data_dir))
    with database.engine.begin() as connection:
        config = db.alembic_config(database.url)
        config.attributes.update(connection=connection, vault=vault.Vault.open(server.data_dir))
        command.downgrade(config, "0002")
    database.close()
    for path in server.data_dir.glob("sandlot.db*"):
        path.chmod(0o644)
    for path in (server.data_dir / "snapshots").rglob("*"):
        if path.parent.name != "snapshots":  # a checkpoint's directory or image
            os.chown(path, 0, 0)
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_old_state_is_made_private_and_its_sandboxes_keep_their_tokens(
    server: Server, e2b: list[str]
) -> None:
    value = f"old-env-{secrets.token_hex(8)}"
    sbx = Sandbox.create(timeout=300, envs={"OLD_SECRET": value})
    e2b.append(sbx.sandbox_id)
    token = sbx._envd_access_token
    assert token
    assert sbx.pause() is True  # nothing of it runs while the server is down
    assert server.stop() == 0
    _make_old(server)
    checkpoints = server.data_dir / "snapshots" / sbx.sandbox_id
    assert _private_tree(checkpoints) != []
    assert token.encode() in _db_bytes(server) and value.encode() in _db_bytes(server), (
        "the old schema holds both in clear"
    )
    server.start()
    found = _db_bytes(server)
    assert token.encode() not in found and value.encode() not in found
    assert _mode(server.data_dir / "sandlot.db") == 0o600
    assert _private_tree(checkpoints) == [], "the old images are made private at start"
    resumed = Sandbox.connect(sbx.sandbox_id, timeout=60)
    assert resumed._envd_access_token == token, "connect gives back the token the client holds"
    assert sbx.commands.run("echo $OLD_SECRET").stdout == f"{value}\n", "the old handle still works"


def test_health_without_a_key_says_only_ok(server: Server) -> None:
    bare = httpx.get(f"{server.url}/health", timeout=10)
    assert (bare.status_code, bare.json()) == (200, {"status": "ok"})
    with server.client() as client:
        detailed = client.get("/health").json()
    assert detailed["status"] == "ok" and "execute-runner" in detailed["pools"]
    assert set(detailed["versions"]) == {"sandlot", "envd", "python"}
    wrong = httpx.get(f"{server.url}/health", headers={"X-API-Key": "e2b_" + "0" * 40}, timeout=10)
    assert wrong.status_code == 401 and "invalid" in wrong.json()["message"]
