"""Chaos: the server SIGKILLed at random moments under a mixed load, and started again.

The clients of bench/load.py (8 by default) loop with more pauses than the default mix and
a fork every third loop, so that kills land in creates, commands, file calls, pauses,
resumes, forks and kills. Each round the load runs for a random 0.5-8 s; then the load's gate
closes (no client starts another call), the server gets SIGKILL and is started again on the
same data dir and port, and once no client call is in flight every sandbox is looked at:

- each one the server lists (running or paused) must be **whole**: a connect answers (and
  resumes it if paused), it says it is running, a command runs and prints what it should, and
  the file its client wrote reads back the same (when that write had been answered);
- each one a client held that the server no longer lists must be **cleanly ended**: its
  ``GET`` is 404 and the host holds no runc container, cgroup or mount of it.

Sandboxes nobody holds (a create or fork in flight at the kill) are killed after the look.
Clients' errors while the server is down are expected: they are counted, not judged. At the
end every sandbox is killed through the API, the server stopped, and the leak census of its
instance (mounts, loop devices, netns, links, containers, cgroups, nft chains, processes)
must be empty (`bench.load.served`).

This process is made a child subreaper, as systemd is for a real server: a killed server's
sandbox processes are handed to it, the next server adopts them, and their zombies are
reaped here once that server has ended them.

    sudo .venv/bin/python -m bench.chaos [--rounds 50] [--clients 8] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import random
import time

import httpx
from e2b import AsyncSandbox
from e2b.sandbox.sandbox_api import SandboxState

from bench import load
from sandlot.runtime import _utils
from sandlot.runtime.drivers import runc
from sandlot.runtime.drivers.runc import host
from tests._support.census import census
from tests._support.server import Server, scratch_dir

MIX = load.Mix(pause_every=2, fork_every=3)


@dataclasses.dataclass
class Round:
    """What one round's look after the restart found."""

    number: int
    after: float
    """Seconds of load before the kill."""
    whole: int = 0
    ended: int = 0
    orphans: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ChaosReport:
    rounds: list[Round]
    load: load.Report

    @property
    def problems(self) -> list[str]:
        return [f"round {r.number}: {p}" for r in self.rounds for p in r.problems]

    def summary(self) -> str:
        whole, ended, orphans = (sum(getattr(r, f) for r in self.rounds) for f in ("whole", "ended", "orphans"))
        lines = [
            f"{len(self.rounds)} rounds of SIGKILL under {self.load.clients} clients: {whole} sandboxes whole "
            f"after a restart, {ended} cleanly ended, {orphans} unheld ones killed, {len(self.problems)} problems",
            f"load (errors expected while the server is down): {self.load.summary()}",
        ]
        return "\n".join(lines + self.problems)


async def chaos(
    server: Server, *, rounds: int, clients: int = 8, seed: int | None = None, call_timeout: float = 60
) -> ChaosReport:
    """Kill and restart ``server`` ``rounds`` times under ``clients`` looping clients and look at
    every sandbox after each restart."""
    host.become_subreaper()
    rng = random.Random(seed)
    mixed = load.prepare(server.url, server.key, clients=clients, seconds=math.inf, mix=MIX, call_timeout=call_timeout)
    driving = asyncio.create_task(mixed.drive())
    done: list[Round] = []
    try:
        for number in range(1, rounds + 1):
            found = Round(number, rng.uniform(0.5, 8.0))
            await asyncio.sleep(found.after)
            mixed.gate.close()
            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.start)
            await asyncio.wait_for(mixed.gate.quiet(), call_timeout + 30)
            await _look(server, mixed, found)
            _utils.reap_orphans_now()
            done.append(found)
            mixed.gate.open()
    finally:
        mixed.stop = time.monotonic()
        mixed.gate.open()
        await driving
    return ChaosReport(done, mixed.report)


async def _look(server: Server, mixed: load.Load, found: Round) -> None:
    """Every listed sandbox whole, every held one that is not listed cleanly ended; the
    unheld ones killed afterwards."""
    headers = {"X-API-Key": server.key}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=mixed.call_timeout) as http:
        listed = {s["sandboxID"] for s in (await http.get("/v2/sandboxes", params={"limit": 1000})).json()}
        for sid in sorted(listed):
            try:
                await _whole(mixed, sid, mixed.held.get(sid))
                found.whole += 1
            except load.LoadError as exc:
                found.problems.append(f"{sid} is listed but not whole: {exc}")
        for sid in sorted(set(mixed.held) - listed):
            answer = await http.get(f"/sandboxes/{sid}")
            left = _host_objects(server, sid)
            if answer.status_code != 404 or left:
                found.problems.append(
                    f"{sid} is not listed, but GET answers {answer.status_code} and the host holds {left}"
                )
            else:
                found.ended += 1
        for sid in sorted(listed - set(mixed.held)):
            await http.delete(f"/sandboxes/{sid}")
            found.orphans += 1


async def _whole(mixed: load.Load, sid: str, content: str | None) -> None:
    timeout = mixed.call_timeout
    sbx = await load.bounded("connect", lambda: AsyncSandbox.connect(sid, **mixed.opts), timeout)
    info = await load.bounded("get_info", lambda: sbx.get_info(), timeout)
    if info.state is not SandboxState.RUNNING:
        raise load.LoadError(f"get_info: {info.state} after connect")
    command, expected = load.COMMANDS[0]
    result = await load.bounded("command", lambda: sbx.commands.run(command, timeout=timeout), timeout)
    if result.stdout != expected:
        raise load.LoadError(f"command: printed {result.stdout!r}, not {expected!r}")
    if content is not None:
        got = await load.bounded("read", lambda: sbx.files.read(load.FILE), timeout)
        if got != content:
            raise load.LoadError(f"read: {load.FILE} holds {got[:80]!r}, not what was written before the kill")


def _host_objects(server: Server, sid: str) -> list[str]:
    """The runc container, cgroups and mounts of ``sid`` the host still holds."""
    now = census(runc.RuncDriver(server.settings))
    return sorted(o for kind in (now.containers, now.cgroups, now.mounts) for o in kind if sid in o)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seed {seed}")
    with scratch_dir("sandlot-bench-") as root, load.served(root, "c") as server:
        report = asyncio.run(chaos(server, rounds=args.rounds, clients=args.clients, seed=seed))
        print(report.summary())
        if report.problems:
            raise SystemExit(f"problems found; the server's data and log are in {server.data_dir}")


if __name__ == "__main__":
    main()
