"""Sandbox lifecycle through the SDK against a real server."""

from __future__ import annotations

import datetime
import uuid

import pytest

from sandlot import AsyncSandbox
from sandlot.sdk import _synchronization, exceptions
from sandlot.sdk._core.config import ConnectionConfig
from tests.sdk.servers import SdkServer

pytestmark = pytest.mark.slow


def _near(when: datetime.datetime, seconds: float, slack: float = 10) -> bool:
    return abs((when - datetime.datetime.now(datetime.UTC)).total_seconds() - seconds) < slack


async def test_create_with_metadata_and_envs(sdk_server: SdkServer) -> None:
    async with await AsyncSandbox.create(
        timeout=120, metadata={"k y": "v&1"}, envs={"GREETING": "hi"}, config=sdk_server.config
    ) as sbx:
        assert (await sbx.commands.run("echo $GREETING")).stdout == "hi\n"
        info = await sbx.get_info()
        assert info.sandbox_id == sbx.sandbox_id
        assert info.template_id == "base"
        assert info.state == "running"
        assert info.metadata == {"k y": "v&1"}
        assert _near(info.end_at, 120)
        assert info.cpu_count >= 1 and info.memory_mb > 0
        sandbox_id = sbx.sandbox_id
    assert await AsyncSandbox.kill(sandbox_id, config=sdk_server.config) is False  # the with block killed it


async def test_default_constructors_read_the_environment(sdk_env: SdkServer) -> None:
    sbx = await AsyncSandbox.create(timeout=60)
    try:
        assert sbx.config.api_url == sdk_env.url
        same = await AsyncSandbox.connect(sbx.sandbox_id)
        assert (await same.commands.run("echo via-connect")).stdout == "via-connect\n"
        await same.aclose()
    finally:
        await sbx.kill()
        await sbx.aclose()


async def test_from_env_takes_an_explicit_mapping(sdk_server: SdkServer) -> None:
    environ = {"SANDLOT_API_URL": sdk_server.url, "SANDLOT_API_KEY": sdk_server.key}
    async with await AsyncSandbox.from_env(environ, timeout=60) as sbx:
        assert await sbx.is_running()


async def test_list_with_filters(sdk_server: SdkServer) -> None:
    suite = uuid.uuid4().hex[:8]
    made = []
    try:
        for i in range(3):
            made.append(
                await AsyncSandbox.create(timeout=120, metadata={"suite": suite, "n": str(i)}, config=sdk_server.config)
            )
        listed = await AsyncSandbox.list(metadata={"suite": suite}, config=sdk_server.config)
        assert {s.sandbox_id for s in listed} == {s.sandbox_id for s in made}
        one = await AsyncSandbox.list(metadata={"suite": suite, "n": "1"}, state="running", config=sdk_server.config)
        assert [s.sandbox_id for s in one] == [made[1].sandbox_id]
        limited = await AsyncSandbox.list(metadata={"suite": suite}, limit=2, config=sdk_server.config)
        assert len(limited) == 2
        paused = await AsyncSandbox.list(metadata={"suite": suite}, state=["paused"], config=sdk_server.config)
        assert paused == []
    finally:
        for sbx in made:
            await sbx.kill()
            await sbx.aclose()


async def test_timeout_info_metrics_and_kill(sbx: AsyncSandbox) -> None:
    await sbx.set_timeout(600)
    assert _near((await sbx.get_info()).end_at, 600)
    await AsyncSandbox.set_timeout(sbx.sandbox_id, 200, config=sbx.config)
    assert _near((await AsyncSandbox.get_info(sbx.sandbox_id, config=sbx.config)).end_at, 200)
    metrics = await sbx.get_metrics()
    assert metrics
    assert 0 < metrics[-1].mem_used <= metrics[-1].mem_total
    assert metrics[-1].disk_total > 0
    assert await sbx.kill() is True
    assert not await sbx.is_running()
    with pytest.raises(exceptions.SandboxNotFoundError):
        await sbx.get_info()


async def test_timeout_expiry_ends_the_sandbox(sdk_server: SdkServer) -> None:
    sbx = await AsyncSandbox.create(timeout=2, config=sdk_server.config)
    try:
        for _ in range(100):
            if not await sbx.is_running():
                break
            await _synchronization.asleep(0.2)
        else:
            raise AssertionError("the sandbox outlived its timeout")
        with pytest.raises(exceptions.SandboxNotRunningError):
            await sbx.commands.run("true")
    finally:
        await sbx.aclose()


async def test_bad_credentials_and_unknown_sandboxes(sdk_server: SdkServer) -> None:
    bad = ConnectionConfig(api_url=sdk_server.url, api_key="e2b_0000")
    with pytest.raises(exceptions.AuthenticationError):
        await AsyncSandbox.create(config=bad)
    with pytest.raises(exceptions.SandboxNotFoundError):
        await AsyncSandbox.connect("doesnotexist", config=sdk_server.config)
    with pytest.raises(exceptions.TemplateNotFoundError):
        await AsyncSandbox.create("no-such-template", config=sdk_server.config)
    with pytest.raises(exceptions.SandboxNotFoundError):
        await AsyncSandbox.get_info("doesnotexist", config=sdk_server.config)
    unreachable = ConnectionConfig(api_url="http://127.0.0.1:1", api_key="e2b_00")
    with pytest.raises(exceptions.UnavailableError):
        await AsyncSandbox.list(config=unreachable)
