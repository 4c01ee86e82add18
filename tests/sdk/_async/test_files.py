"""Files through the SDK against a real server."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandlot import AsyncSandbox, FileType, WatchEventType
from sandlot.sdk import exceptions

pytestmark = pytest.mark.slow


async def test_write_read_and_info(sbx: AsyncSandbox) -> None:
    info = await sbx.files.write("/tmp/a.txt", "hello ☃")
    assert (info.name, info.path, info.type) == ("a.txt", "/tmp/a.txt", FileType.FILE)
    assert await sbx.files.read("/tmp/a.txt") == "hello ☃"
    assert await sbx.files.read_bytes("/tmp/a.txt") == "hello ☃".encode()
    entry = await sbx.files.get_info("/tmp/a.txt")
    assert (entry.name, entry.type, entry.size, entry.owner) == ("a.txt", FileType.FILE, 9, "user")
    assert entry.permissions.startswith("-rw")
    assert entry.modified_time is not None
    assert (await sbx.files.stat("/tmp")).type is FileType.DIR


async def test_relative_paths_users_and_binary(sbx: AsyncSandbox) -> None:
    data = bytes(range(256)) * 4
    info = await sbx.files.write("rel/bin.dat", data)
    assert info.path == "/home/user/rel/bin.dat"
    assert await sbx.files.read_bytes("/home/user/rel/bin.dat") == data
    root_file = await sbx.files.write("/root/secret", "s", user="root")
    assert root_file.path == "/root/secret"
    assert (await sbx.files.get_info("/root/secret", user="root")).owner == "root"
    mine = await sbx.files.write("/tmp/mine", "m")
    assert (await sbx.files.get_info(mine.path)).owner == "user"


async def test_write_many_and_overwrite(sbx: AsyncSandbox) -> None:
    written = await sbx.files.write_many({"/tmp/m/a": "A", "/tmp/m/sub/b": b"B", "m2.txt": io.BytesIO(b"C")})
    assert [w.path for w in written] == ["/tmp/m/a", "/tmp/m/sub/b", "/home/user/m2.txt"]
    assert await sbx.files.read("/tmp/m/sub/b") == "B"
    await sbx.files.write("/tmp/m/a", "replaced")
    assert await sbx.files.read("/tmp/m/a") == "replaced"


async def test_metadata_is_kept(sbx: AsyncSandbox) -> None:
    info = await sbx.files.write("/tmp/meta", "x", metadata={"owner": "me"})
    assert info.metadata.get("owner") == "me"
    assert (await sbx.files.get_info("/tmp/meta")).metadata.get("owner") == "me"


async def test_list_exists_make_dir_rename_remove(sbx: AsyncSandbox) -> None:
    assert await sbx.files.make_dir("/tmp/d/e") is True
    assert await sbx.files.make_dir("/tmp/d/e") is False
    await sbx.files.write("/tmp/d/f.txt", "f")
    await sbx.files.write("/tmp/d/e/g.txt", "g")
    await sbx.commands.run("ln -s /tmp/d/f.txt /tmp/d/link")
    shallow = {e.name: e for e in await sbx.files.list("/tmp/d")}
    assert set(shallow) == {"e", "f.txt", "link"}
    assert shallow["e"].type is FileType.DIR
    assert shallow["link"].type is FileType.SYMLINK
    deep = {e.path for e in await sbx.files.list("/tmp/d", depth=2)}
    assert "/tmp/d/e/g.txt" in deep
    assert await sbx.files.exists("/tmp/d/f.txt")
    assert not await sbx.files.exists("/tmp/d/nope")
    moved = await sbx.files.rename("/tmp/d/f.txt", "/tmp/d/e/moved.txt")
    assert moved.path == "/tmp/d/e/moved.txt"
    assert not await sbx.files.exists("/tmp/d/f.txt")
    await sbx.files.remove("/tmp/d")
    assert not await sbx.files.exists("/tmp/d")


async def test_errors(sbx: AsyncSandbox) -> None:
    with pytest.raises(exceptions.PathNotFoundError):
        await sbx.files.read("/tmp/missing")
    with pytest.raises(exceptions.PathNotFoundError):
        await sbx.files.get_info("/tmp/missing")
    with pytest.raises(exceptions.NotFoundError):
        await sbx.files.list("/tmp/missing")
    with pytest.raises(exceptions.SandlotError):
        await sbx.files.read("/tmp")
    with pytest.raises(exceptions.InvalidArgumentError):
        await sbx.files.read("")


async def test_watch_events(sbx: AsyncSandbox) -> None:
    await sbx.files.make_dir("/tmp/w")
    seen = []
    async with sbx.files.watch("/tmp/w", timeout=20) as watch:
        await sbx.files.write("/tmp/w/new.txt", "1")
        await sbx.files.remove("/tmp/w/new.txt")
        async for event in watch:
            seen.append((event.type, event.name))
            if event.type is WatchEventType.REMOVE:
                break
    assert (WatchEventType.CREATE, "new.txt") in seen
    assert seen[-1] == (WatchEventType.REMOVE, "new.txt")


async def test_watch_recursive_with_entries(sbx: AsyncSandbox) -> None:
    await sbx.files.make_dir("/tmp/wr/sub")
    async with sbx.files.watch("/tmp/wr", recursive=True, include_entry=True, timeout=20) as watch:
        await sbx.files.write("/tmp/wr/sub/deep.txt", "x")
        async for event in watch:
            if event.name.endswith("deep.txt"):
                break
    assert event.name == "sub/deep.txt"


async def test_watch_ends_quietly_at_its_timeout(sbx: AsyncSandbox) -> None:
    await sbx.files.make_dir("/tmp/quiet")
    events = []
    async with sbx.files.watch("/tmp/quiet", timeout=1) as watch:
        async for event in watch:
            events.append(event)
    assert events == []


async def test_large_file_streams_both_ways(sbx: AsyncSandbox, tmp_path: Path) -> None:
    size = 64 * 1024 * 1024 + 123
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(source, "wb") as f:  # noqa: ASYNC230 - the test's own temp file, written before it talks to the sandbox
        block = os.urandom(1024 * 1024)
        left = size
        while left:
            piece = block[: min(left, len(block))]
            f.write(piece)
            digest.update(piece)
            left -= len(piece)
    progress: list[int] = []
    info = await sbx.files.upload(source, "/tmp/big.bin", on_progress=progress.append)
    assert info.path == "/tmp/big.bin"
    assert progress[-1] == size
    assert (await sbx.files.get_info("/tmp/big.bin")).size == size
    remote = (await sbx.commands.run("sha256sum /tmp/big.bin")).stdout.split()[0]
    assert remote == digest.hexdigest()
    target = tmp_path / "back.bin"
    assert await sbx.files.download("/tmp/big.bin", target) == size
    assert target.stat().st_size == size
    back = hashlib.sha256()
    async with sbx.files.stream("/tmp/big.bin") as stream:
        async for chunk in stream.aiter_bytes():
            assert len(chunk) <= 1024 * 1024
            back.update(chunk)
    assert back.hexdigest() == digest.hexdigest()


async def test_write_from_chunks(sbx: AsyncSandbox) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(100):
            yield f"{i}\n".encode()

    await sbx.files.write("/tmp/chunks.txt", chunks())
    assert (await sbx.files.read("/tmp/chunks.txt")).splitlines()[-1] == "99"
