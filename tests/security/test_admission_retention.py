"""Pause checkpoints and snapshots older than SANDLOT_RETENTION_DAYS are removed by the timers,
and the paused sandbox is ended (issue 11, item 5). The retention here is 4 seconds."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from sandlot.store import models as store
from tests import conftest
from tests.security.admission import created, serve

RETENTION = 4.0


def _until(check: httpx.Client, url: str, status: int, within: float) -> None:
    deadline = time.monotonic() + within
    while check.get(url).status_code != status:
        assert time.monotonic() < deadline, f"{url} did not answer {status} within {within} s"
        time.sleep(0.2)


@conftest.needs_criu
def test_checkpoints_and_snapshots_expire(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(data_root, monkeypatch, retention_days=RETENTION / 86400) as server, server.client() as client:
        before, source, after = (created(client, timeout=300) for _ in range(3))
        assert client.post(f"/sandboxes/{before}/pause").status_code == 204
        snapshot = client.post(f"/sandboxes/{source}/snapshots", json={"name": "old", "memory": False})
        assert snapshot.status_code == 201, snapshot.text
        # A restart dates the checkpoint by its files: the server keeps no pause time.
        server.stop()
        server.start()
        assert client.post(f"/sandboxes/{after}/pause").status_code == 204
        assert client.get(f"/sandboxes/{before}").json()["state"] == "paused"
        assert [s["snapshotID"] for s in client.get("/snapshots").json()] == ["old:v1"]

        for paused in (before, after):
            _until(client, f"/sandboxes/{paused}", 404, RETENTION + 10)
            assert not (server.data_dir / "snapshots" / paused).exists(), "its checkpoint is removed"
        assert client.get("/v2/sandboxes", params={"state": "paused"}).json() == []
        database = server.database
        try:
            with database.session() as session:
                assert {session.get(store.SandboxRecord, s).state for s in (before, after)} == {"killed"}  # type: ignore[union-attr]
        finally:
            database.close()

        deadline = time.monotonic() + RETENTION + 10
        while client.get("/snapshots").json():
            assert time.monotonic() < deadline, "the snapshot outlived the retention"
            time.sleep(0.2)
        assert client.post("/v2/sandboxes", json={"templateID": "old:v1"}).status_code == 404
        assert list((server.data_dir / "snapshots" / "named").iterdir()) == [], "its files are removed"
        assert client.get(f"/sandboxes/{source}").json()["state"] == "running", "a running sandbox is not touched"
