"""Template specs: what goes into a template's root filesystem, read from a TOML file.

A spec is a small TOML file named after the template (``base.toml`` for ``base``)::

    name = "base"
    description = "Debian 12 with python3, node, git and a sudo-capable user"
    packages = ["python3", "nodejs", "git"]
    run = ["rm -f /usr/lib/python3*/EXTERNALLY-MANAGED"]

    [env]
    LANG = "C.UTF-8"

The built-in specs live in ``sandlot/templates/specs/``; an operator adds or overrides templates by
passing extra directories to `load`, which are searched first.

A spec's `TemplateSpec.digest` names the directory its build lands in, so a template is rebuilt
exactly when something that shapes its files changes: the spec itself, the builder
(`BUILDER_VERSION`, bumped by hand whenever `builder` changes what it writes) or the uid shift the
files are owned with. The digest is taken over a canonical JSON form, so reordering a TOML table
or listing the same packages in another order does not rebuild anything.

* TemplateError                (what to fix is in the message)
  + CommandError               (a build step's command failed; carries the tail of its output)
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated

import pydantic
import pydantic_core

__all__ = [
    "BUILDER_VERSION",
    "BUILTIN_SPECS_DIR",
    "CommandError",
    "TemplateError",
    "TemplateSpec",
    "available",
    "find",
    "from_mapping",
    "load",
    "load_file",
]

BUILDER_VERSION = 2
"""Bump whenever the builder changes what it puts in a rootfs: every template then rebuilds."""

BUILTIN_SPECS_DIR = Path(__file__).parent / "specs"

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""Template names become directory names and CLI arguments: lower case, no dots or slashes."""


class TemplateError(Exception):
    """A template cannot be loaded, built or found; the message says what to fix."""


class CommandError(TemplateError):
    """A command of a build step exited non-zero.

    Attributes:
        step: the build step (``debootstrap``, ``packages``, ``user``, ``commands``).
        command: the command as the spec or the builder wrote it.
        returncode: its exit status.
        output_tail: its last lines of output (stdout and stderr together).
        log_path: the build's whole log, if it was written to one.
    """

    def __init__(
        self, step: str, command: str, returncode: int, output_tail: str, *, log_path: Path | None = None
    ) -> None:
        super().__init__(f"{step}: `{command}` exited with status {returncode}")
        self.step = step
        self.command = command
        self.returncode = returncode
        self.output_tail = output_tail
        self.log_path = log_path


_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

PackageName = Annotated[str, pydantic.StringConstraints(pattern=_PACKAGE.pattern)]


class TemplateSpec(pydantic.BaseModel):
    """One template: a Debian suite, apt packages, shell commands, and the sandbox's defaults.

    Example:
        >>> spec = TemplateSpec(name="tiny", run=["echo hi > /hello"])
        >>> spec.user, spec.workdir
        ('user', '/home/user')
    """

    model_config = pydantic.ConfigDict(strict=True, extra="forbid", frozen=True)

    name: Annotated[str, pydantic.StringConstraints(pattern=NAME_PATTERN)]
    """The template's name: its spec file is ``NAME.toml``, its builds live in ``templates/NAME``."""
    description: str = ""
    suite: Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")] = "bookworm"
    """The Debian suite debootstrap installs."""
    packages: list[PackageName] = []
    """Apt packages installed with ``--no-install-recommends``; ``name=version`` pins one."""
    run: list[str] = []
    """Shell commands (``/bin/sh -c``) run as root in the rootfs after the packages and the user."""
    env: dict[str, str] = {}
    """The sandbox's default environment."""
    user: Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "user"
    """The user sandbox processes run as: created with uid and gid 1000 and passwordless sudo,
    unless it is ``root``."""
    workdir: str = "/home/user"
    """The working directory of sandbox processes; created (owned by `user`) if missing."""

    @pydantic.field_validator("env")
    @classmethod
    def _check_env(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not _ENV_NAME.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return env

    @pydantic.field_validator("workdir")
    @classmethod
    def _check_workdir(cls, workdir: str) -> str:
        if not workdir.startswith("/") or "\0" in workdir or ".." in workdir.split("/"):
            raise ValueError(f"{workdir!r} must be an absolute path without '..'")
        return workdir

    @pydantic.field_validator("run")
    @classmethod
    def _check_run(cls, run: list[str]) -> list[str]:
        for i, command in enumerate(run):
            if not command.strip():
                raise ValueError(f"command {i} is empty")
        return run

    def canonical_json(self) -> str:
        """The spec as JSON with sorted keys and sorted, de-duplicated packages."""
        data = self.model_dump(mode="json")
        data["packages"] = sorted(set(self.packages))
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def digest(self, userns_base: int) -> str:
        """The build's identity: 16 hex digits of sha256 over spec, builder version and uid shift.

        Args:
            userns_base: the uid the files' owners are shifted by; the builder passes 0 when
                sandboxes run without a user namespace, so that case gets its own digest too.

        Example:
            >>> TemplateSpec(name="a").digest(100000) != TemplateSpec(name="a").digest(0)
            True
        """
        payload = json.dumps(
            {"spec": self.canonical_json(), "builder": BUILDER_VERSION, "userns_base": userns_base},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


_PATTERN_HINTS = {
    "name": "a valid template name (lower-case letters, digits, '-' and '_', at most 63)",
    "suite": "a Debian suite name such as 'bookworm'",
    "packages": "a valid apt package name (optionally name=version)",
    "user": "a valid user name (lower-case letters, digits, '-' and '_', at most 32)",
}


def _describe(error: pydantic_core.ErrorDetails) -> str:
    loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(TemplateSpec.model_fields)
        return f"{loc}: unknown field (allowed: {allowed})"
    if error["type"] == "missing":
        return f"{loc}: required field is missing"
    if error["type"] == "string_pattern_mismatch" and error["loc"][0] in _PATTERN_HINTS:
        return f"{loc}: {error['input']!r} is not {_PATTERN_HINTS[str(error['loc'][0])]}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"].endswith("_type"):
        return f"{loc}: {message} (got {error['input']!r})"
    return f"{loc}: {message}"


def from_mapping(data: dict[str, object], *, source: str) -> TemplateSpec:
    """Validate `data` as a spec, turning pydantic's errors into one `TemplateError`.

    Args:
        source: what to name in the message, usually the spec file's path.
    """
    try:
        return TemplateSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise TemplateError(f"invalid template spec {source}: {problems}") from None


def load_file(path: Path) -> TemplateSpec:
    """Read and validate one spec file; a missing ``name`` is taken from the file name."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise TemplateError(f"template spec {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"template spec {path} is not valid TOML: {exc}") from None
    data.setdefault("name", path.stem)
    spec = from_mapping(data, source=str(path))
    if spec.name != path.stem:
        raise TemplateError(
            f"invalid template spec {path}: name: {spec.name!r} must match the file name "
            f"(rename the file to {spec.name}.toml or set name = {path.stem!r})"
        )
    return spec


def find(name: str, search_dirs: Iterable[Path] = ()) -> Path | None:
    """The spec file for template `name`: extra dirs first, then the built-in specs."""
    if not re.match(NAME_PATTERN, name):
        return None
    for directory in [*search_dirs, BUILTIN_SPECS_DIR]:
        candidate = Path(directory) / f"{name}.toml"
        if candidate.is_file():
            return candidate
    return None


def available(search_dirs: Sequence[Path] = ()) -> list[str]:
    """The names of every template that has a spec file."""
    names: set[str] = set()
    for directory in [*search_dirs, BUILTIN_SPECS_DIR]:
        if Path(directory).is_dir():
            names.update(p.stem for p in Path(directory).glob("*.toml") if re.match(NAME_PATTERN, p.stem))
    return sorted(names)


def load(name: str, search_dirs: Sequence[Path] = ()) -> TemplateSpec:
    """Load template `name` from ``NAME.toml`` in `search_dirs` or the built-in specs dir.

    Raises:
        TemplateError: no such spec, or the spec is invalid; the message says what to fix.

    Example:
        >>> load("base").user
        'user'
    """
    if not re.match(NAME_PATTERN, name):
        raise TemplateError(
            f"{name!r} is not a valid template name (lower-case letters, digits, '-' and '_', "
            "starting with a letter or digit)"
        )
    path = find(name, search_dirs)
    if path is None:
        where = ", ".join(str(d) for d in [*search_dirs, BUILTIN_SPECS_DIR])
        known = ", ".join(available(search_dirs)) or "none"
        raise TemplateError(f"no template named {name!r}: no {name}.toml in {where} (known: {known})")
    return load_file(path)
