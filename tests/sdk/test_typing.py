"""A type checker accepts every call form of the SDK and catches a wrong argument in each flavour.

``kill``, ``fork`` and the other instance-or-class operations go through a descriptor
(:mod:`sandlot.sdk._core.hybrid`); this holds that mypy still sees the method's own parameters on
an instance and the result type on the class, for the async source and the generated sync twin, and the
options of ``create`` and ``execute`` (keyword arguments typed by a TypedDict) keep their types.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

USER_CODE = '''
from sandlot import AsyncSandbox, ExecuteResult, Sandbox, SandboxInfo, SnapshotInfo, aexecute, execute


async def async_forms(sbx: AsyncSandbox) -> None:
    killed: bool = await sbx.kill()
    killed = await AsyncSandbox.kill("sbx-1", api_key="e2b_00")
    await sbx.set_timeout(60)
    await AsyncSandbox.set_timeout("sbx-1", 60, api_url="http://127.0.0.1:3000")
    copies: list[AsyncSandbox] = await sbx.fork(2, timeout=5)
    copies = await AsyncSandbox.fork("sbx-1", 2)
    snapshots: list[SnapshotInfo] = await sbx.list_snapshots(limit=3)
    snapshots = await AsyncSandbox.list_snapshots(name="warm", limit=3)
    info: SandboxInfo = await AsyncSandbox.get_info("sbx-1")
    await sbx.set_timeout("soon")  # wrong: a str for an int
    fresh: AsyncSandbox = await AsyncSandbox.create("base", timeout=60, envs={"A": "1"}, api_key="e2b_00")
    ran: ExecuteResult = await aexecute("print(1)", language="python", timeout=2, api_url="http://h:1")
    await AsyncSandbox.create(timeout="60")  # wrong: a str for an int


def sync_forms(sbx: Sandbox) -> None:
    killed: bool = sbx.kill()
    killed = Sandbox.kill("sbx-1")
    copies: list[Sandbox] = Sandbox.fork("sbx-1", 2)
    copies = sbx.fork(2)
    deleted: bool = Sandbox.delete_snapshot("warm:v1") or sbx.delete_snapshot("warm:v1")
    resumed: bool = sbx.resume(timeout=600) and Sandbox.resume("sbx-1", 600)
    count: int = Sandbox.get_info("sbx-1")  # wrong: the result is a SandboxInfo
    ran: ExecuteResult = execute(files={"main.py": "print(1)"}, language="python", memory_mb=64)
    execute("print(1)", language="python", memory_mb="64")  # wrong: a str for an int
'''


def test_mypy_accepts_every_call_form_and_rejects_wrong_ones(tmp_path: Path) -> None:
    snippet = tmp_path / "user_code.py"
    code = textwrap.dedent(USER_CODE).lstrip()
    snippet.write_text(code)
    wrong = [number for number, line in enumerate(code.splitlines(), 1) if "# wrong" in line]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(snippet)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    errors = [int(number) for number in re.findall(r"user_code\.py:(\d+): error", result.stdout)]
    assert errors == wrong, result.stdout
