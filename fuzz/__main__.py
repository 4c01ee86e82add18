"""Run the fuzzers, each for a bounded time with a fixed seed: ``python -m fuzz [NAME ...]``.

Each target starts from its seeds in fuzz/corpus/NAME (read only: what a run discovers goes to
a scratch directory) and runs for ``--time`` seconds. The C target is compiled first with clang
(``-fsanitize=fuzzer,address,undefined``). A finding stops that target; its input and log are
kept and the exit status is 1. The last line per target says how many inputs it ran.

Example:
    $ python -m fuzz --time 25
    fuzz connect: 120434 runs in 26 s, nothing found
    fuzz files: 6213 runs in 26 s, nothing found
    fuzz init_frames: 1036430 runs in 26 s, nothing found
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "fuzz"


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    max_len: int
    dictionary: str | None = None
    source: str | None = None
    """The C file of a libFuzzer target; None for a Python (atheris) one, run as fuzz.<name>."""


TARGETS = (
    Target("connect", max_len=8192, dictionary="connect.dict"),
    Target("files", max_len=4096),
    Target("init_frames", max_len=4096, source="init_frames.c"),
)
_DONE = re.compile(rb"Done (\d+) runs in (\d+) second")
_STATUS = re.compile(rb"^#(\d+)\s", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Result:
    target: Target
    ok: bool
    runs: int
    seconds: int
    log: Path

    def summary(self) -> str:
        if self.ok:
            return f"fuzz {self.target.name}: {self.runs} runs in {self.seconds} s, nothing found"
        return f"fuzz {self.target.name}: FOUND A PROBLEM after {self.runs} runs, see {self.log}"


def _command(target: Target, work: Path) -> list[str]:
    if target.source is None:
        return [sys.executable, "-m", f"fuzz.{target.name}"]
    binary = work / target.name
    clang = shutil.which("clang")
    if clang is None:
        raise SystemExit("fuzz: clang is missing (scripts/setup installs clang and libclang-rt-14-dev)")
    subprocess.run(
        [clang, "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
         "-o", str(binary), str(HERE / target.source)],
        check=True,
    )
    return [str(binary)]


def run(target: Target, seconds: int, seed: int, work: Path) -> Result:
    """Fuzz ``target`` for ``seconds``; inputs it finds and its log go under ``work``."""
    corpus = work / f"{target.name}-corpus"
    corpus.mkdir()
    flags = [
        f"-seed={seed}",
        f"-max_total_time={seconds}",
        f"-max_len={target.max_len}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={work}/{target.name}-",
    ]
    if target.dictionary:
        flags.append(f"-dict={HERE / target.dictionary}")
    log = work / f"{target.name}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TMPDIR": str(work)}
    with log.open("wb") as out:
        code = subprocess.run(
            [*_command(target, work), *flags, str(corpus), str(HERE / "corpus" / target.name)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=seconds * 4 + 120,
            check=False,
        ).returncode
    text = log.read_bytes()
    done = _DONE.search(text)
    if done:
        runs, took = int(done.group(1)), int(done.group(2))
    else:  # stopped by a finding: the last status line counts the inputs run so far
        runs, took = max((int(n) for n in _STATUS.findall(text)), default=0), 0
    return Result(target, code == 0 and done is not None, runs, took, log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(t.name for t in TARGETS) + " (default: all)")
    parser.add_argument("--time", type=int, default=25, help="seconds per target (default 25)")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed (default 1)")
    args = parser.parse_args(argv)
    by_name = {t.name: t for t in TARGETS}
    unknown = [name for name in args.names if name not in by_name]
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)}; choose from {', '.join(by_name)}")
    failed = False
    for name in args.names or by_name:
        work = Path(tempfile.mkdtemp(prefix=f"sandlot-fuzz-{name}-"))
        result = run(by_name[name], args.time, args.seed, work)
        print(result.summary(), flush=True)
        if result.ok:
            shutil.rmtree(work)
        else:
            failed = True
            sys.stdout.write(result.log.read_text(errors="replace")[-4000:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
