"""The memory limits of running sandboxes together stay within SANDLOT_MEMORY_OVERCOMMIT times
the host's memory: a create, resume, restart or fork past it gets 503 with Retry-After (issue 11, item 5).
The server here gives out 768 MiB, so that a second 512 MiB sandbox does not fit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import conftest
from tests.security.admission import MiB, create, created, error, serve


def _ratio_for(mb: int) -> float:
    return mb * MiB / (os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


@conftest.needs_criu
def test_memory_overcommit_is_refused_with_retry_after(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(data_root, monkeypatch, memory_overcommit=_ratio_for(768)) as server, server.client() as client:
        first = created(client, memoryMB=512, timeout=30)
        full = create(client, memoryMB=512)
        message = error(full, 503)
        assert "running sandboxes hold 512 MiB" in message and "asks 512 MiB" in message, message
        assert 1 <= int(full.headers["Retry-After"]) <= 30, "until the first sandbox is due to end"
        assert len(client.get("/v2/sandboxes").json()) == 1, "nothing was made of a refused create"
        assert client.post(f"/sandboxes/{first}/fork", json={"count": 1}).status_code == 503
        small = created(client, memoryMB=128)

        assert client.post(f"/sandboxes/{first}/pause").status_code == 204, "a paused sandbox holds no memory"
        second = created(client, memoryMB=512)
        for wake in ("connect", "resume", "restart"):
            answer = client.post(f"/sandboxes/{first}/{wake}", json={"timeout": 60})
            assert "asks 512 MiB" in error(answer, 503), wake
        assert client.get(f"/sandboxes/{first}").json()["state"] == "paused", "a refused resume leaves it paused"

        assert client.delete(f"/sandboxes/{second}").status_code == 204
        assert client.post(f"/sandboxes/{first}/connect", json={"timeout": 60}).status_code == 201
        assert client.delete(f"/sandboxes/{small}").status_code == 204
