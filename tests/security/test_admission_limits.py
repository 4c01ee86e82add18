"""A create asking more than the per-sandbox maximum is refused with 400 naming the cap, where it
used to be clamped silently (issue 11, item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandlot.config import Settings
from tests.security.admission import create, created, error, serve


def test_over_the_maximum_is_refused_naming_the_cap(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(data_root, monkeypatch) as server, server.client() as client:
        cases = {
            "cpuCount": (3, "cpuCount 3 is above this server's maximum of 2 per sandbox"),
            "memoryMB": (8193, "memoryMB 8193 is above this server's maximum of 8192 per sandbox"),
            "diskSizeMB": (20481, "diskSizeMB 20481 is above this server's maximum of 20480 per sandbox"),
        }
        for field, (value, message) in cases.items():
            assert error(create(client, **{field: value}), 400) == message
        every = error(create(client, cpuCount=4, memoryMB=9000, diskSizeMB=30000), 400)
        assert every.count("above this server's maximum") == 3, every
        assert client.get("/v2/sandboxes").json() == [], "nothing was made of a refused create"
        sid = created(client, cpuCount=2, memoryMB=8192, diskSizeMB=20480)
        info = client.get(f"/sandboxes/{sid}").json()
        caps = (info["cpuCount"], info["memoryMB"], info["diskSizeMB"])
        assert caps == (2, 8192, 20480), "the caps themselves are fine"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SANDLOT_MEMORY_OVERCOMMIT", "0", "SANDLOT_MEMORY_OVERCOMMIT must be more than 0"),
        ("SANDLOT_PROXY_CONNECTIONS", "-1", "SANDLOT_PROXY_CONNECTIONS must be more than 0"),
        ("SANDLOT_DISK_FREE_FLOOR_MB", "-5", "SANDLOT_DISK_FREE_FLOOR_MB must be 0 or more"),
        ("SANDLOT_RETENTION_DAYS", "soon", "SANDLOT_RETENTION_DAYS='soon' is not a valid float"),
    ],
)
def test_bad_admission_settings_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(environ={variable: value})
