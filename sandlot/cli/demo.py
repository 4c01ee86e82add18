"""``sandlot demo``: the smoke test a person runs on a new machine.

It makes one sandbox from the ``base`` template, runs a few commands in it, shows what they
printed and how long each step took, and removes the sandbox again. Until the server lands this
is what ``scripts/serve`` ends with.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sandlot.config import RuntimeSettings, Settings
from sandlot.runtime import base, errors, models
from sandlot.runtime.drivers.runc import RuncDriver

__all__ = ["demo"]

_COMMANDS = [
    ["sh", "-c", "echo hello from $(hostname) as $(id -un)"],
    ["python", "-c", "import sys; print('python', sys.version.split()[0])"],
    ["node", "-e", "console.log('node', process.version)"],
    ["sh", "-c", "df -h / | tail -1; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || true"],
]


def demo(
    template: Annotated[str, typer.Option(help="Template to start the sandbox from.")] = "base",
    data_dir: Annotated[Path | None, typer.Option(help="Sandbox state directory.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Template and build cache directory.")] = None,
) -> None:
    """Create a sandbox, run a few commands in it, and destroy it."""
    settings = Settings.from_env(data_dir=data_dir, cache_dir=cache_dir).runtime
    console = Console()
    try:
        asyncio.run(_demo(settings, template, console))
    except errors.RuntimeDriverError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(1) from None


async def _demo(settings: RuntimeSettings, template: str, console: Console) -> None:
    table = Table("step", "ms", "output")
    async with RuncDriver(settings) as driver:
        sid = f"demo-{secrets.token_hex(4)}"
        started = time.perf_counter()
        await driver.create(spec=models.SandboxSpec(sandbox_id=sid, template=template))
        table.add_row("create", f"{(time.perf_counter() - started) * 1000:.1f}", sid)
        try:
            for argv in _COMMANDS:
                started = time.perf_counter()
                proc = await driver.start(sandbox_id=sid, process=models.ProcessSpec(argv))
                out = bytearray()
                async for stream, chunk in proc.output():
                    if stream is base.OutputStream.STDOUT:
                        out.extend(chunk)
                status = await proc.wait()
                await proc.aclose()
                shown = out.decode(errors="replace").strip() or f"exit {status.exit_code}"
                table.add_row(" ".join(argv)[:40], f"{(time.perf_counter() - started) * 1000:.1f}", shown)
        finally:
            started = time.perf_counter()
            await driver.destroy(sandbox_id=sid)
            table.add_row("destroy", f"{(time.perf_counter() - started) * 1000:.1f}", "")
    console.print(table)
