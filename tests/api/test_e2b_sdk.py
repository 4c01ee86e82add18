"""The control plane through the unmodified, latest `e2b` SDK (docs/e2b-wire.md §2)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from e2b import Sandbox
from e2b.exceptions import AuthenticationException, NotFoundException
from e2b.sandbox.sandbox_api import SandboxQuery, SandboxState

from sandlot.store import models, vault
from tests._support.server import Server

pytestmark = pytest.mark.usefixtures("e2b_env")


def _near(when: datetime, seconds: float, slack: float = 5) -> bool:
    return abs((when - datetime.now(UTC)).total_seconds() - seconds) < slack


def test_create_with_metadata_and_env_vars(server: Server, cleanup: list[str]) -> None:
    sbx = Sandbox.create(
        timeout=60, metadata={"k y": "v&1", "suite": "create"}, envs={"GREETING": "hi"}
    )
    cleanup.append(sbx.sandbox_id)
    assert (
        sbx.sandbox_id.isalnum()
        and sbx.sandbox_id.islower()
        and len(sbx.sandbox_id) == 20
    )
    info = sbx.get_info()
    assert info.sandbox_id == sbx.sandbox_id
    assert info.template_id == "base"
    assert info.metadata == {"k y": "v&1", "suite": "create"}
    assert info.state is SandboxState.RUNNING
    assert info.envd_version == "0.6.4"
    assert info.sandbox_domain and "e2b" not in info.sandbox_domain
    assert _near(info.end_at, 60)
    assert info.memory_mb == 512 and info.cpu_count == 1
    database = server.database
    with database.session() as session:
        row = session.get(models.SandboxRecord, sbx.sandbox_id)
        assert row is not None and row.access_token_sealed
        key = vault.Vault.open(server.data_dir)
        assert key.unseal(row.env_vars_sealed, row=f"sandboxes/{row.id}/env_vars") == {"GREETING": "hi"}
    database.close()


def test_list_filters_and_paging(cleanup: list[str]) -> None:
    suite = uuid.uuid4().hex[:8]
    made = []
    for i in range(3):
        sbx = Sandbox.create(timeout=120, metadata={"suite": suite, "n": str(i)})
        cleanup.append(sbx.sandbox_id)
        made.append(sbx.sandbox_id)
    paginator = Sandbox.list(
        query=SandboxQuery(metadata={"suite": suite}, state=[SandboxState.RUNNING]),
        limit=2,
    )
    first = paginator.next_items()
    assert len(first) == 2 and paginator.has_next
    second = paginator.next_items()
    assert len(second) == 1 and not paginator.has_next
    seen = [s.sandbox_id for s in first + second]
    assert seen == made[::-1], "newest first by default"
    only = Sandbox.list(
        query=SandboxQuery(metadata={"suite": suite, "n": "1"})
    ).next_items()
    assert [s.sandbox_id for s in only] == [made[1]]
    assert (
        Sandbox.list(
            query=SandboxQuery(metadata={"suite": suite}, state=[SandboxState.PAUSED])
        ).next_items()
        == []
    )


def test_set_timeout_extends_and_shortens(cleanup: list[str]) -> None:
    sbx = Sandbox.create(timeout=30)
    cleanup.append(sbx.sandbox_id)
    sbx.set_timeout(600)
    assert _near(sbx.get_info().end_at, 600)
    sbx.set_timeout(45)
    assert _near(sbx.get_info().end_at, 45)


def test_metrics_are_real(cleanup: list[str]) -> None:
    sbx = Sandbox.create(timeout=60)
    cleanup.append(sbx.sandbox_id)
    [metric] = sbx.get_metrics()
    assert metric.mem_total == 512 * 1024 * 1024
    assert 0 < metric.mem_used < metric.mem_total
    assert metric.disk_total > 0 and 0 <= metric.disk_used < metric.disk_total
    assert metric.cpu_count == 1 and 0 <= metric.cpu_used_pct <= 100


def test_kill(cleanup: list[str]) -> None:
    sbx = Sandbox.create(timeout=60)
    cleanup.append(sbx.sandbox_id)
    assert sbx.kill() is True
    with pytest.raises(NotFoundException):
        sbx.get_info()
    assert Sandbox.kill(sbx.sandbox_id) is False
    assert sbx.sandbox_id not in [s.sandbox_id for s in Sandbox.list().next_items()]


def test_timeout_expiry(cleanup: list[str]) -> None:
    sbx = Sandbox.create(timeout=2)
    cleanup.append(sbx.sandbox_id)
    assert sbx.get_info().state is SandboxState.RUNNING
    time.sleep(3.5)
    with pytest.raises(NotFoundException):
        sbx.get_info()


def test_connect_never_shortens(cleanup: list[str]) -> None:
    sbx = Sandbox.create(timeout=300)
    cleanup.append(sbx.sandbox_id)
    before = sbx.get_info().end_at
    again = Sandbox.connect(sbx.sandbox_id, timeout=10)
    assert again.sandbox_id == sbx.sandbox_id
    assert sbx.get_info().end_at == before
    Sandbox.connect(sbx.sandbox_id, timeout=900)
    assert _near(sbx.get_info().end_at, 900)
    with pytest.raises(NotFoundException):
        Sandbox.connect("nosuchsandbox0000000")


def test_wrong_key_is_401(server: Server) -> None:
    with pytest.raises(AuthenticationException):
        Sandbox.create(api_key="e2b_" + "0" * 40)
    with pytest.raises(AuthenticationException):
        Sandbox.list(api_key="e2b_" + "1" * 40).next_items()


def test_other_teams_sandbox_is_404(other_key: str, cleanup: list[str]) -> None:
    sbx = Sandbox.create(timeout=60)
    cleanup.append(sbx.sandbox_id)
    with pytest.raises(NotFoundException):
        Sandbox.get_info(sbx.sandbox_id, api_key=other_key)
    assert Sandbox.kill(sbx.sandbox_id, api_key=other_key) is False
    with pytest.raises(NotFoundException):
        Sandbox.set_timeout(sbx.sandbox_id, 10, api_key=other_key)
    with pytest.raises(NotFoundException):
        Sandbox.connect(sbx.sandbox_id, api_key=other_key)
    assert sbx.sandbox_id not in [
        s.sandbox_id for s in Sandbox.list(api_key=other_key).next_items()
    ]
    assert sbx.get_info().state is SandboxState.RUNNING


def test_started_after_and_template_filters(cleanup: list[str]) -> None:
    mark = datetime.now(UTC) - timedelta(seconds=1)
    sbx = Sandbox.create(timeout=60, metadata={"filter": "started"})
    cleanup.append(sbx.sandbox_id)
    found = Sandbox.list(
        query=SandboxQuery(metadata={"filter": "started"})
    ).next_items()
    assert [s.sandbox_id for s in found] == [sbx.sandbox_id]
    assert found[0].started_at > mark
