# Generated from tests/sdk/_async/test_files.py by scripts/unasync.py. DO NOT EDIT.
# ruff: noqa
"""Files through the SDK against a real server."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandlot import Sandbox, FileType, WatchEventType
from sandlot.sdk import exceptions

pytestmark = pytest.mark.slow


def test_write_read_and_info(sbx: Sandbox) -> None:
    info = sbx.files.write("/tmp/a.txt", "hello ☃")
    assert (info.name, info.path, info.type) == ("a.txt", "/tmp/a.txt", FileType.FILE)
    assert sbx.files.read("/tmp/a.txt") == "hello ☃"
    assert sbx.files.read_bytes("/tmp/a.txt") == "hello ☃".encode()
    entry = sbx.files.get_info("/tmp/a.txt")
    assert (entry.name, entry.type, entry.size, entry.owner) == ("a.txt", FileType.FILE, 9, "user")
    assert entry.permissions.startswith("-rw")
    assert entry.modified_time is not None
    assert (sbx.files.stat("/tmp")).type is FileType.DIR


def test_relative_paths_users_and_binary(sbx: Sandbox) -> None:
    data = bytes(range(256)) * 4
    info = sbx.files.write("rel/bin.dat", data)
    assert info.path == "/home/user/rel/bin.dat"
    assert sbx.files.read_bytes("/home/user/rel/bin.dat") == data
    root_file = sbx.files.write("/root/secret", "s", user="root")
    assert root_file.path == "/root/secret"
    assert (sbx.files.get_info("/root/secret", user="root")).owner == "root"
    mine = sbx.files.write("/tmp/mine", "m")
    assert (sbx.files.get_info(mine.path)).owner == "user"


def test_write_many_and_overwrite(sbx: Sandbox) -> None:
    written = sbx.files.write_many({"/tmp/m/a": "A", "/tmp/m/sub/b": b"B", "m2.txt": io.BytesIO(b"C")})
    assert [w.path for w in written] == ["/tmp/m/a", "/tmp/m/sub/b", "/home/user/m2.txt"]
    assert sbx.files.read("/tmp/m/sub/b") == "B"
    sbx.files.write("/tmp/m/a", "replaced")
    assert sbx.files.read("/tmp/m/a") == "replaced"


def test_metadata_is_kept(sbx: Sandbox) -> None:
    info = sbx.files.write("/tmp/meta", "x", metadata={"owner": "me"})
    assert info.metadata.get("owner") == "me"
    assert (sbx.files.get_info("/tmp/meta")).metadata.get("owner") == "me"


def test_list_exists_make_dir_rename_remove(sbx: Sandbox) -> None:
    assert sbx.files.make_dir("/tmp/d/e") is True
    assert sbx.files.make_dir("/tmp/d/e") is False
    sbx.files.write("/tmp/d/f.txt", "f")
    sbx.files.write("/tmp/d/e/g.txt", "g")
    sbx.commands.run("ln -s /tmp/d/f.txt /tmp/d/link")
    shallow = {e.name: e for e in sbx.files.list("/tmp/d")}
    assert set(shallow) == {"e", "f.txt", "link"}
    assert shallow["e"].type is FileType.DIR
    assert shallow["link"].type is FileType.SYMLINK
    deep = {e.path for e in sbx.files.list("/tmp/d", depth=2)}
    assert "/tmp/d/e/g.txt" in deep
    assert sbx.files.exists("/tmp/d/f.txt")
    assert not sbx.files.exists("/tmp/d/nope")
    moved = sbx.files.rename("/tmp/d/f.txt", "/tmp/d/e/moved.txt")
    assert moved.path == "/tmp/d/e/moved.txt"
    assert not sbx.files.exists("/tmp/d/f.txt")
    sbx.files.remove("/tmp/d")
    assert not sbx.files.exists("/tmp/d")


def test_errors(sbx: Sandbox) -> None:
    with pytest.raises(exceptions.PathNotFoundError):
        sbx.files.read("/tmp/missing")
    with pytest.raises(exceptions.PathNotFoundError):
        sbx.files.get_info("/tmp/missing")
    with pytest.raises(exceptions.NotFoundError):
        sbx.files.list("/tmp/missing")
    with pytest.raises(exceptions.SandlotError):
        sbx.files.read("/tmp")
    with pytest.raises(exceptions.InvalidArgumentError):
        sbx.files.read("")


def test_watch_events(sbx: Sandbox) -> None:
    sbx.files.make_dir("/tmp/w")
    seen = []
    with sbx.files.watch("/tmp/w", timeout=20) as watch:
        sbx.files.write("/tmp/w/new.txt", "1")
        sbx.files.remove("/tmp/w/new.txt")
        for event in watch:
            seen.append((event.type, event.name))
            if event.type is WatchEventType.REMOVE:
                break
    assert (WatchEventType.CREATE, "new.txt") in seen
    assert seen[-1] == (WatchEventType.REMOVE, "new.txt")


def test_watch_recursive_with_entries(sbx: Sandbox) -> None:
    sbx.files.make_dir("/tmp/wr/sub")
    with sbx.files.watch("/tmp/wr", recursive=True, include_entry=True, timeout=20) as watch:
        sbx.files.write("/tmp/wr/sub/deep.txt", "x")
        for event in watch:
            if event.name.endswith("deep.txt"):
                break
    assert event.name == "sub/deep.txt"


def test_watch_ends_quietly_at_its_timeout(sbx: Sandbox) -> None:
    sbx.files.make_dir("/tmp/quiet")
    events = []
    with sbx.files.watch("/tmp/quiet", timeout=1) as watch:
        for event in watch:
            events.append(event)
    assert events == []


def test_large_file_streams_both_ways(sbx: Sandbox, tmp_path: Path) -> None:
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
    info = sbx.files.upload(source, "/tmp/big.bin", on_progress=progress.append)
    assert info.path == "/tmp/big.bin"
    assert progress[-1] == size
    assert (sbx.files.get_info("/tmp/big.bin")).size == size
    remote = (sbx.commands.run("sha256sum /tmp/big.bin")).stdout.split()[0]
    assert remote == digest.hexdigest()
    target = tmp_path / "back.bin"
    assert sbx.files.download("/tmp/big.bin", target) == size
    assert target.stat().st_size == size
    back = hashlib.sha256()
    with sbx.files.stream("/tmp/big.bin") as stream:
        for chunk in stream.iter_bytes():
            assert len(chunk) <= 1024 * 1024
            back.update(chunk)
    assert back.hexdigest() == digest.hexdigest()


def test_write_from_chunks(sbx: Sandbox) -> None:
    def chunks() -> Iterator[bytes]:
        for i in range(100):
            yield f"{i}\n".encode()

    sbx.files.write("/tmp/chunks.txt", chunks())
    assert (sbx.files.read("/tmp/chunks.txt")).splitlines()[-1] == "99"
