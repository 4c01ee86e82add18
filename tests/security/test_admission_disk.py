"""A create, pause, snapshot or fork that would take the data filesystem under the free-space
floor is refused with 507, the message saying what is free and what was asked (issue 11,
item 5). The server's floor is set 2 GiB under what is free when it starts, and every refused
ask is hundreds of MiB past what is left, so that other work on the machine cannot change the
outcome."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import conftest
from tests.security.admission import create, created, error, free_mb, hold_memory, serve


@conftest.needs_criu
def test_asks_past_the_free_space_floor_are_refused(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    floor = free_mb(data_root) - 2048
    with serve(data_root, monkeypatch, disk_free_floor_mb=floor) as server, server.client() as client:
        message = error(create(client, diskSizeMB=4096), 507)
        assert re.search(r"this create needs 4096 MiB, and the server's data filesystem has \d+ MiB free", message)
        assert f"the server keeps {floor} MiB free" in message, message
        assert client.get("/v2/sandboxes").json() == [], "nothing was made of a refused create"

        sid = created(client, diskSizeMB=1024, memoryMB=3072)
        reserved = error(create(client, diskSizeMB=1500), 507)
        assert re.search(r"[1-9]\d* MiB of it reserved for the disks of running sandboxes", reserved), (
            "the unwritten part of the running sandbox's disk counts as taken"
        )
        hold_memory(sid, 2048)  # a checkpoint of it takes 2 GiB; about 1 GiB is left
        for what, answer in {
            "pausing it": client.post(f"/sandboxes/{sid}/pause"),
            "this snapshot": client.post(f"/sandboxes/{sid}/snapshots", json={}),
            "forking it 1 times": client.post(f"/sandboxes/{sid}/fork", json={"count": 1}),
        }.items():
            message = error(answer, 507)
            needs = re.search(rf"{what} needs (\d+) MiB", message)
            assert needs and int(needs.group(1)) >= 2048, message
        assert client.get(f"/sandboxes/{sid}").json()["state"] == "running", "a refused pause leaves it running"
        assert client.get("/snapshots").json() == []
        assert len(client.get("/v2/sandboxes").json()) == 1
