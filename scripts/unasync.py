#!/usr/bin/env python3
"""Generate the sync SDK (and its tests) from the async source, httpcore-style.

The async code under ``sandlot/sdk/_async`` and ``tests/sdk/_async`` is the only hand-written
I/O code; this script rewrites it token by token into ``_sync`` (``AsyncSandbox`` -> ``Sandbox``,
``async def`` -> ``def``, ``await x`` -> ``x``, ``aclose`` -> ``close``...). Each generated file
starts with a DO NOT EDIT line naming its source.

Code is rewritten everywhere, string literals included (a sync ``repr`` must say ``Sandbox``).
Docstrings and comments are prose: only the code inside them is rewritten (doctest lines, and
``literal`` and :role:`reference` spans), so a sentence about the two flavours, or about how
this file is made, says the same in both.

Usage:
    python scripts/unasync.py           # regenerate
    python scripts/unasync.py --check   # exit 1, listing them, if generated files are stale
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIRS = [
    ("sandlot/sdk/_async", "sandlot/sdk/_sync"),
    ("tests/sdk/_async", "tests/sdk/_sync"),
]

# (pattern, replacement), applied in order to every line. Word boundaries keep `aclose` from
# touching `_aclose_all` and `Async` prefixes from touching names that merely contain them.
SUBS = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\bAsync([A-Z][A-Za-z0-9_]*)", r"\1"),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\baclose\b", "close"),
    (r"\baread\b", "read"),
    (r"\baiter_bytes\b", "iter_bytes"),
    (r"\baiter_raw\b", "iter_raw"),
    (r"\basleep\b", "sleep"),
    (r"\basynccontextmanager\b", "contextmanager"),
    (r"\b_async\b", "_sync"),
    (r"\basync_sandbox\b", "sandbox"),
    (r"\baexecute\b", "execute"),  # the paired names of sandlot.execute / sandlot.aexecute
]
COMPILED = [(re.compile(pattern), replacement) for pattern, replacement in SUBS]


# The code inside prose: a doctest line (from its prompt to its end), a ``literal``, a :role:`x`.
CODE_IN_PROSE = re.compile(r"(?m)(?:>>>|\.\.\.) .*$|``[^`]+``|:[a-z]+:`[^`]+`")
# What may come just before a docstring: the start of the file or of a statement.
STATEMENT_START = {tokenize.ENCODING, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}


def unasync_code(code: str) -> str:
    """Rewrite code: every name, keyword and string literal in it."""
    for pattern, replacement in COMPILED:
        code = pattern.sub(replacement, code)
    return code


def unasync_prose(prose: str) -> str:
    """Rewrite only the code inside a docstring or comment; its sentences stay as written."""
    return CODE_IN_PROSE.sub(lambda match: unasync_code(match.group(0)), prose)


def prose_spans(text: str) -> list[tuple[int, int]]:
    """Where the docstrings and comments of ``text`` are, as (start, end) character offsets."""
    line_starts = [0]
    for line in text.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    spans = []
    previous = tokenize.ENCODING
    for index, token in enumerate(tokens):
        is_docstring = (
            token.type == tokenize.STRING
            and previous in STATEMENT_START
            and tokens[index + 1].type in (tokenize.NEWLINE, tokenize.ENDMARKER)
        )
        if token.type == tokenize.COMMENT or is_docstring:
            (start_row, start_col), (end_row, end_col) = token.start, token.end
            spans.append((line_starts[start_row - 1] + start_col, line_starts[end_row - 1] + end_col))
        if token.type not in (tokenize.NL, tokenize.COMMENT):
            previous = token.type
    return spans


def unasync_source(text: str) -> str:
    """The sync twin of an async module: its code rewritten, its prose only where it holds code."""
    parts, done = [], 0
    for start, end in prose_spans(text):
        parts += [unasync_code(text[done:start]), unasync_prose(text[start:end])]
        done = end
    parts.append(unasync_code(text[done:]))
    return "".join(parts)


def generate(source: Path, rel: str) -> str:
    header = f"# Generated from {rel} by scripts/unasync.py. DO NOT EDIT.\n# ruff: noqa\n"
    return header + unasync_source(source.read_text())


def plan() -> tuple[dict[Path, str], set[Path]]:
    """What each generated file should contain, and the generated files with no source left."""
    wanted: dict[Path, str] = {}
    orphans: set[Path] = set()
    for src_dir, dst_dir in DIRS:
        src_root, dst_root = ROOT / src_dir, ROOT / dst_dir
        if not src_root.is_dir():
            continue
        for source in sorted(src_root.rglob("*.py")):
            rel = source.relative_to(src_root)
            wanted[dst_root / rel] = generate(source, f"{src_dir}/{rel}")
        if dst_root.is_dir():
            orphans |= {p for p in dst_root.rglob("*.py") if p not in wanted}
    return wanted, orphans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the generated files are stale")
    args = parser.parse_args()
    wanted, orphans = plan()
    stale = sorted(
        path for path, text in wanted.items() if not path.is_file() or path.read_text() != text
    ) + sorted(orphans)
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run python scripts/unasync.py)", file=sys.stderr)
        return 1 if stale else 0
    for path, text in wanted.items():
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    for path in orphans:
        path.unlink()
        print(f"removed {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
