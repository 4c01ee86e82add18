"""The bodies of ``POST /execute`` and ``GET /execute/languages``.

Keys are snake_case, as code runners' clients (Piston's, judges') expect. Every limit of a
request is checked here, so that a bad one is a 400 that names the field, before any sandbox
is touched; the server's own ceilings (`ExecuteSettings`) are applied by the executor.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

__all__ = ["ExecuteRequest", "ExecuteResult", "LanguageInfo", "SourceFile", "Stage", "Status"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}){0,7}$")

Status = Literal["ok", "timeout", "oom", "output_limit", "compile_error", "runtime_error"]


class SourceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=1024)]
    """A relative path (``main.py``, ``src/util.rs``): letters, digits, ``_.-``, ``/`` between parts."""

    @field_validator("name")
    @classmethod
    def _relative(cls, name: str) -> str:
        if not _FILE_NAME.match(name):
            raise ValueError(
                f"{name!r} is not a file name this runner takes: use up to 8 parts of letters, digits, "
                "'_', '.' and '-' (not starting with '.' or '-') joined by '/'"
            )
        return name
    content: Annotated[str, Field(max_length=1 << 20)]
    encoding: Literal["utf8", "base64"] = "utf8"
    _data: bytes = PrivateAttr(b"")

    @model_validator(mode="after")
    def _decode(self) -> SourceFile:
        if self.encoding == "utf8":
            self._data = self.content.encode()
        else:
            try:
                self._data = base64.b64decode(self.content, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{self.name!r} is not valid base64") from None
        return self

    @property
    def data(self) -> bytes:
        """The file's bytes, decoded."""
        return self._data


class ExecuteRequest(BaseModel):
    """What to run and within which limits (docs: README, "POST /execute")."""

    model_config = ConfigDict(extra="forbid")

    language: Annotated[str, Field(min_length=1, max_length=64)]
    version: Annotated[str, Field(max_length=64)] | None = None
    code: Annotated[str, Field(max_length=1 << 20)] | None = None
    files: Annotated[list[SourceFile], Field(min_length=1, max_length=64)] | None = None
    stdin: Annotated[str, Field(max_length=1 << 20)] = ""
    args: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=256)] = []
    env: Annotated[
        dict[Annotated[str, Field(max_length=256)], Annotated[str, Field(max_length=4096)]], Field(max_length=128)
    ] = {}
    timeout: Annotated[float, Field(gt=0)] = 10.0
    """Wall-clock seconds the program may run (the compile step has its own limit)."""
    cpu_time: Annotated[float, Field(gt=0)] | None = None
    """CPU seconds the program may use, all its processes together."""
    memory_mb: Annotated[int, Field(ge=16)] | None = None
    output_limit: Annotated[int, Field(ge=1)] = 65536
    """Bytes of stdout and stderr together; past it the program is stopped and cut."""
    network: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ExecuteRequest:
        if (self.code is None) == (self.files is None):
            raise ValueError("give the program as exactly one of code and files")
        if self.files is not None and len({f.name for f in self.files}) != len(self.files):
            raise ValueError("files: two files have the same name")
        return self

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not _ENV_NAME.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if "\0" in value:
                raise ValueError(f"the value of {key} contains a NUL character")
        return env

    @field_validator("args")
    @classmethod
    def _no_nul(cls, args: list[str]) -> list[str]:
        if any("\0" in a for a in args):
            raise ValueError("an argument contains a NUL character")
        return args


class Stage(BaseModel):
    """How the compile or the run step went."""

    stdout: str
    stderr: str
    exit_code: int | None
    """None when a signal ended the program."""
    signal: str | None
    """The signal's name (``SIGKILL``) when one ended it."""
    status: Status
    wall_ms: float
    cpu_ms: float
    memory_peak_kb: int
    truncated: bool
    """The output went past ``output_limit`` and was cut there."""


class ExecuteResult(BaseModel):
    language: str
    version: str
    compile: Stage | None = None
    """Only for compiled languages."""
    run: Stage | None = None
    """None when the compile step did not succeed."""


class LanguageInfo(BaseModel):
    language: str
    version: str | None
    aliases: list[str]
    compiled: bool
