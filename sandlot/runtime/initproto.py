"""The wire protocol of ``sandlot-init`` (each sandbox's PID 1) and an asyncio client for it.

Why a PID 1 of our own speaks TCP: CRIU checkpoints only the sandbox's process tree, so the
pipes and PTYs of sandboxed processes must end inside it. ``sandlot-init`` holds them and relays
their I/O over TCP to the host daemon, which closes its connections before a checkpoint and
connects again after a restore; the processes never notice. The C source (``init/init.c``)
has the same description of the protocol as here; this docstring is the specification for
Python.

Framing (big-endian): ``u32 length`` of what follows (type + payload, at most 1 MiB + 16),
``u8 type``, payload. A string is ``u32 length`` + bytes (UTF-8 here, with surrogateescape so
that any byte string round-trips); a string list is ``u32 count`` + strings. A malformed frame,
an unknown type or a frame that is too long makes init close the connection.

Client to init:

====  ===========  =======================================================================
0x01  HELLO        the token. The first frame of every connection; a wrong one closes it.
0x02  SPAWN        ``u8 flags`` (1 PTY, 2 keep stdin open), ``u16 rows``, ``u16 cols``,
                   str user (name or uid), str cwd (empty: the user's home), str tag,
                   list argv, list env (``K=V``). Answered by STARTED, after which the
                   connection is the process's stream, or by ERROR (no STARTED for a program
                   that never ran: init learns the exec errno before answering).
0x03  ATTACH       ``u32 pid``: STARTED and the connection becomes a stream, or ERROR ESRCH.
0x04  LIST         answered by 0x84 LIST.
0x05  SIGNAL       ``u32 pid``, ``u32 signum``: sent to the process group.
0x06  STDIN        ``u32 pid`` + data.
0x07  CLOSE_STDIN  ``u32 pid`` (on a PTY: sends the EOF character, ^D).
0x08  RESIZE       ``u32 pid``, ``u16 rows``, ``u16 cols``.
0x09  PING
0x10  STDIN        on a stream, no reply: data.
0x11  CLOSE_STDIN  on a stream, no reply.
0x12  SIGNAL       on a stream, no reply: ``u32 signum``.
0x13  RESIZE       on a stream, no reply: ``u16 rows``, ``u16 cols``.
====  ===========  =======================================================================

Init to client: ``0x81 OK`` (HELLO and control requests 0x05-0x09), ``0x82 STARTED u32 pid``,
``0x84 LIST`` (``u32 count``, then per process ``u32 pid, u8 pty, str tag, str cwd,
list argv``), ``0x8F ERROR u32 errno, str message``; on a stream ``0x90 STDOUT`` data,
``0x91 STDERR`` data, ``0x92 EXIT i32 exit_code (-1 if killed), i32 signal (0 if it
exited)``, after which init closes the connection. Every stream attached to a process gets
all of its output from the moment it attached, and the EXIT. Closing a stream only detaches.

Connections: one per process stream (so one slow reader never holds up another process), plus
one shared control connection for the requests 0x04-0x09.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import struct
import weakref
from collections.abc import AsyncGenerator, Iterable, Iterator
from typing import NoReturn

from sandlot.runtime import base, errors, models

__all__ = [
    "MAX_FRAME",
    "FrameType",
    "InitClient",
    "InitProcess",
    "PayloadReader",
    "ProtocolError",
    "SpawnFlags",
    "decode_error",
    "decode_exit",
    "decode_list",
    "encode_frame",
    "encode_list",
    "encode_spawn",
    "encode_str",
    "read_frame",
]

MAX_FRAME = 1024 * 1024 + 16
"""The largest ``length`` a frame may declare (type byte + payload)."""
MAX_DATA = 1024 * 1024
"""Stdin is sent in chunks of at most this many bytes, to stay under MAX_FRAME."""
CONNECT_TIMEOUT = 10.0


class FrameType(enum.IntEnum):
    HELLO = 0x01
    SPAWN = 0x02
    ATTACH = 0x03
    LIST = 0x04
    SIGNAL = 0x05
    STDIN = 0x06
    CLOSE_STDIN = 0x07
    RESIZE = 0x08
    PING = 0x09
    STREAM_STDIN = 0x10
    STREAM_CLOSE_STDIN = 0x11
    STREAM_SIGNAL = 0x12
    STREAM_RESIZE = 0x13
    OK = 0x81
    STARTED = 0x82
    LIST_REPLY = 0x84
    ERROR = 0x8F
    STDOUT = 0x90
    STDERR = 0x91
    EXIT = 0x92


class SpawnFlags(enum.IntFlag):
    PTY = 1
    STDIN = 2


class ProtocolError(ValueError):
    """Init sent something that does not follow the protocol."""


# -- encoding ----------------------------------------------------------------------------------


def encode_frame(type_: FrameType, payload: bytes = b"") -> bytes:
    if len(payload) + 1 > MAX_FRAME:
        raise ValueError(f"frame payload of {len(payload)} bytes is over the limit")
    return struct.pack(">IB", len(payload) + 1, type_) + payload


def encode_str(value: str | bytes) -> bytes:
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    return struct.pack(">I", len(raw)) + raw


def encode_list(values: Iterable[str]) -> bytes:
    items = [encode_str(value) for value in values]
    return struct.pack(">I", len(items)) + b"".join(items)


def encode_spawn(spec: models.ProcessSpec) -> bytes:
    """The SPAWN payload for ``spec``."""
    for name in spec.env:
        if not name or "=" in name:
            raise errors.ProcessStartError(f"invalid environment variable name {name!r}", errno.EINVAL)
    flags = SpawnFlags(0)
    if spec.pty is not None:
        flags |= SpawnFlags.PTY
    if spec.stdin:
        flags |= SpawnFlags.STDIN
    size = spec.pty or models.PtySize()
    return b"".join(
        (
            struct.pack(">BHH", flags, size.rows, size.cols),
            encode_str(spec.user),
            encode_str(spec.cwd or ""),
            encode_str(spec.tag),
            encode_list(spec.argv),
            encode_list(f"{key}={value}" for key, value in spec.env.items()),
        )
    )


# -- decoding ----------------------------------------------------------------------------------


class PayloadReader:
    """Reads the fields of one payload in order; running past its end is a ProtocolError."""

    def __init__(self, payload: bytes) -> None:
        self._data = payload
        self._pos = 0

    def _take(self, n: int) -> bytes:
        if self._pos + n > len(self._data):
            raise ProtocolError("truncated payload")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def u8(self) -> int:
        return self._take(1)[0]

    def u32(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def i32(self) -> int:
        return int(struct.unpack(">i", self._take(4))[0])

    def string(self) -> str:
        return self._take(self.u32()).decode("utf-8", "surrogateescape")

    def strings(self) -> tuple[str, ...]:
        return tuple(self.string() for _ in range(self.u32()))

    def end(self) -> None:
        if self._pos != len(self._data):
            raise ProtocolError(f"{len(self._data) - self._pos} unexpected bytes at the end of a payload")


def decode_error(payload: bytes) -> tuple[int, str]:
    """ERROR's ``(errno, message)``."""
    reader = PayloadReader(payload)
    code, message = reader.u32(), reader.string()
    reader.end()
    return code, message


def decode_exit(payload: bytes) -> models.ExitStatus:
    reader = PayloadReader(payload)
    code, signum = reader.i32(), reader.i32()
    # An init restored from a checkpoint made before max_rss_kb existed sends without it.
    rss = reader.u32() if len(payload) > 8 else None
    reader.end()
    if signum:
        return models.ExitStatus(exit_code=None, signal=signum, max_rss_kb=rss)
    return models.ExitStatus(exit_code=code, max_rss_kb=rss)


def decode_list(payload: bytes) -> list[models.ProcessInfo]:
    reader = PayloadReader(payload)
    infos = []
    for _ in range(reader.u32()):
        pid, pty, tag, cwd, argv = reader.u32(), reader.u8(), reader.string(), reader.string(), reader.strings()
        infos.append(models.ProcessInfo(pid=pid, argv=argv, cwd=cwd, pty=bool(pty), tag=tag))
    reader.end()
    return infos


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next ``(type, payload)``; raises IncompleteReadError when the peer closed."""
    length, type_ = struct.unpack(">IB", await reader.readexactly(5))
    if not 1 <= length <= MAX_FRAME:
        raise ProtocolError(f"frame length {length} is out of range")
    return type_, await reader.readexactly(length - 1)


# -- client ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _io_errors(what: str) -> Iterator[None]:
    """Turn what can go wrong on a connection into RuntimeDriverError, keeping the cause."""
    try:
        yield
    except asyncio.IncompleteReadError as exc:
        raise errors.RuntimeDriverError(f"{what}: init closed the connection") from exc
    except (OSError, ProtocolError) as exc:
        raise errors.RuntimeDriverError(f"{what}: {exc}") from exc


def _raise_error(payload: bytes, *, pid: int | None = None) -> NoReturn:
    with _io_errors("reading an error from init"):
        code, message = decode_error(payload)
    if code == errno.ESRCH and pid is not None:
        raise errors.ProcessNotFound(pid)
    raise errors.RuntimeDriverError(f"init: {message} ({errno.errorcode.get(code, code)})")


def _unexpected(type_: int) -> NoReturn:
    raise errors.RuntimeDriverError(f"init sent an unexpected frame of type {type_:#04x}")


class _Connection:
    """One authenticated TCP connection to init."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, token: bytes, first: bytes = b"") -> _Connection:
        """Connect and authenticate; ``first`` is sent along with HELLO to save a round trip."""
        with _io_errors(f"connecting to init at {host}:{port}"):
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        conn = cls(reader, writer)
        try:
            with _io_errors(f"authenticating to init at {host}:{port} (wrong token?)"):
                writer.write(encode_frame(FrameType.HELLO, token) + first)
                type_, _ = await read_frame(reader)
            if type_ != FrameType.OK:
                _unexpected(type_)
        except BaseException:
            await conn.aclose()
            raise
        return conn

    @property
    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    async def send(self, frame: bytes) -> None:
        self.writer.write(frame)
        await self.writer.drain()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class InitProcess:
    """A process stream on its own connection; implements `sandlot.runtime.base.Process`.

    Closing it (`aclose`) only detaches: the process goes on running inside the sandbox.
    """

    def __init__(self, conn: _Connection, pid: int) -> None:
        self._conn = conn
        self._pid = pid
        self._exit: models.ExitStatus | None = None
        self._closed = False
        self._reading = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pid(self) -> int:
        return self._pid

    async def output(self) -> AsyncGenerator[tuple[base.OutputStream, bytes], None]:
        """Chunks of output until the process exits; one iteration at a time per handle."""
        if self._reading:
            raise RuntimeError("output() of this process is already being iterated")
        self._reading = True
        self._idle.clear()
        try:
            while self._exit is None:
                try:
                    with _io_errors(f"reading the output of pid {self._pid}"):
                        type_, payload = await read_frame(self._conn.reader)
                except errors.RuntimeDriverError:
                    if self._closed:
                        return
                    raise
                if type_ == FrameType.STDOUT:
                    yield base.OutputStream.STDOUT, payload
                elif type_ == FrameType.STDERR:
                    yield base.OutputStream.STDERR, payload
                elif type_ == FrameType.EXIT:
                    with _io_errors(f"reading the exit of pid {self._pid}"):
                        self._exit = decode_exit(payload)
                    await self.aclose()  # init closes its side too; nothing more can come
                else:
                    _unexpected(type_)
        finally:
            self._reading = False
            self._idle.set()

    async def wait(self) -> models.ExitStatus:
        """The exit status; if no one else is reading the output, reads and drops it."""
        while self._exit is None:
            if self._reading:
                await self._idle.wait()
                continue
            async with contextlib.aclosing(self.output()) as chunks:
                async for _ in chunks:
                    pass
            if self._exit is None:
                raise errors.StreamClosed(self._pid)
        return self._exit

    async def _send(self, frame: bytes) -> None:
        if self._exit is not None:
            raise errors.ProcessNotFound(self._pid)
        if self._closed:
            raise errors.RuntimeDriverError(f"the handle on pid {self._pid} is closed")
        with _io_errors(f"writing to the stream of pid {self._pid}"):
            await self._conn.send(frame)

    async def write_stdin(self, data: bytes) -> None:
        for start in range(0, len(data), MAX_DATA):
            await self._send(encode_frame(FrameType.STREAM_STDIN, data[start : start + MAX_DATA]))

    async def close_stdin(self) -> None:
        await self._send(encode_frame(FrameType.STREAM_CLOSE_STDIN))

    async def signal(self, signum: int) -> None:
        await self._send(encode_frame(FrameType.STREAM_SIGNAL, struct.pack(">I", signum)))

    async def resize(self, size: models.PtySize) -> None:
        await self._send(encode_frame(FrameType.STREAM_RESIZE, struct.pack(">HH", size.rows, size.cols)))

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._conn.aclose()


class InitClient:
    """Talks to one sandbox's init.

    Example:
        >>> client = InitClient("10.211.0.2", 49983, token)
        >>> proc = await client.spawn(models.ProcessSpec(argv=["echo", "hi"]))
        >>> async for stream, data in proc.output(): ...
        >>> await proc.wait()
        ExitStatus(exit_code=0, signal=None)
    """

    def __init__(self, host: str, port: int, token: bytes) -> None:
        self._host = host
        self._port = port
        self._token = token
        self._control: _Connection | None = None
        self._lock = asyncio.Lock()
        self._streams: weakref.WeakSet[InitProcess] = weakref.WeakSet()

    async def __aenter__(self) -> InitClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _open_stream(self, type_: FrameType, payload: bytes) -> tuple[_Connection, int, bytes]:
        """A new connection carrying one SPAWN or ATTACH; returns it with the reply."""
        conn = await _Connection.open(self._host, self._port, self._token, encode_frame(type_, payload))
        try:
            with _io_errors(f"waiting for init to answer {type_.name}"):
                reply, body = await read_frame(conn.reader)
        except BaseException:
            await conn.aclose()
            raise
        if reply != FrameType.STARTED:
            await conn.aclose()
        return conn, reply, body

    async def spawn(self, spec: models.ProcessSpec) -> InitProcess:
        """Start a process; raises `ProcessStartError` when it could not run (errno says why)."""
        conn, reply, body = await self._open_stream(FrameType.SPAWN, encode_spawn(spec))
        if reply == FrameType.ERROR:
            with _io_errors("reading a spawn error from init"):
                code, message = decode_error(body)
            raise errors.ProcessStartError(message, code)
        if reply != FrameType.STARTED or len(body) != 4:
            await conn.aclose()
            _unexpected(reply)
        return self._track(InitProcess(conn, struct.unpack(">I", body)[0]))

    async def attach(self, pid: int) -> InitProcess:
        """A new stream on a running process: its output from now on, and its exit."""
        conn, reply, body = await self._open_stream(FrameType.ATTACH, struct.pack(">I", pid))
        if reply == FrameType.ERROR:
            _raise_error(body, pid=pid)
        if reply != FrameType.STARTED:
            await conn.aclose()
            _unexpected(reply)
        return self._track(InitProcess(conn, pid))

    def _track(self, process: InitProcess) -> InitProcess:
        self._streams.add(process)
        return process

    async def _request(self, type_: FrameType, payload: bytes = b"", *, pid: int | None = None) -> bytes:
        """Send one control request and return the payload of its OK (or LIST) reply."""
        async with self._lock:
            if self._control is not None and not self._control.usable:
                await self._control.aclose()
                self._control = None
            if self._control is None:
                self._control = await _Connection.open(self._host, self._port, self._token)
            try:
                with _io_errors(f"sending {type_.name} to init"):
                    await self._control.send(encode_frame(type_, payload))
                    reply, body = await read_frame(self._control.reader)
            except BaseException:
                # Cancelled or broken halfway: a late reply must not answer the next request.
                await self._control.aclose()
                self._control = None
                raise
        if reply == FrameType.ERROR:
            _raise_error(body, pid=pid)
        expected = FrameType.LIST_REPLY if type_ == FrameType.LIST else FrameType.OK
        if reply != expected:
            _unexpected(reply)
        return body

    async def list(self) -> list[models.ProcessInfo]:
        """The processes init started that are still running."""
        body = await self._request(FrameType.LIST)
        with _io_errors("reading the process list"):
            return decode_list(body)

    async def signal(self, pid: int, signum: int) -> None:
        await self._request(FrameType.SIGNAL, struct.pack(">II", pid, signum), pid=pid)

    async def write_stdin(self, pid: int, data: bytes) -> None:
        for start in range(0, len(data), MAX_DATA):
            chunk = data[start : start + MAX_DATA]
            await self._request(FrameType.STDIN, struct.pack(">I", pid) + chunk, pid=pid)

    async def close_stdin(self, pid: int) -> None:
        await self._request(FrameType.CLOSE_STDIN, struct.pack(">I", pid), pid=pid)

    async def resize(self, pid: int, size: models.PtySize) -> None:
        await self._request(FrameType.RESIZE, struct.pack(">IHH", pid, size.rows, size.cols), pid=pid)

    async def ping(self) -> None:
        """Round trip on the control connection: init is up and the token is right."""
        await self._request(FrameType.PING)

    async def aclose(self) -> None:
        """Close every connection to init, process streams included: their ``output()``
        ends, the processes go on. A checkpoint needs this: CRIU freezes TCP connections
        silently, so a stream left open would wait for ever."""
        async with self._lock:
            if self._control is not None:
                await self._control.aclose()
                self._control = None
        for process in list(self._streams):
            await process.aclose()
