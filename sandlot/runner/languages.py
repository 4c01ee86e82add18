"""The languages of ``POST /execute``: one small TOML file each, so adding a language is adding a file.

A language file names the template its programs run in, the file a request's ``code`` is
written to, the command that prints the version, and the commands that compile (for compiled
languages) and run a program::

    name = "rust"
    aliases = ["rs"]
    entry = "main.rs"
    version = ["rustc", "--version"]
    compile = ["rustc", "--edition", "2021", "-O", "-o", "{stem}", "{entry}"]
    run = ["./{stem}"]

``{entry}`` is the entry file's name (the request's first file, or ``entry``), ``{stem}`` the
same without its extension; a request's ``args`` come after ``run``. The built-in files live in
``sandlot/runner/specs/``; an operator's directory (`ExecuteSettings.languages_dir`) is
searched first, so a file there replaces a built-in one of the same name.

Versions are not written down: they are what the template's programs say they are, asked once
per server (`Catalog.detect`) by running ``version`` in a runner sandbox, and the first
``N.N[.N...]`` of its output is the language's version.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated

import pydantic

__all__ = ["BUILTIN_DIR", "Catalog", "Language", "LanguageError", "load", "parse_version"]

BUILTIN_DIR = Path(__file__).parent / "specs"

_NAME = r"^[a-z][a-z0-9+#_-]{0,31}$"
_VERSION = re.compile(r"\d+(?:\.\d+)+")

Name = Annotated[str, pydantic.StringConstraints(pattern=_NAME)]
Argv = Annotated[list[Annotated[str, pydantic.StringConstraints(min_length=1)]], pydantic.Field(min_length=1)]


class LanguageError(Exception):
    """A language file cannot be read, or a request names no language this server has."""


class Language(pydantic.BaseModel):
    """One language of ``POST /execute`` (module docstring).

    Example:
        >>> python = Language(name="python", entry="main.py", version=["python3", "-V"],
        ...                   run=["python3", "{entry}"])
        >>> python.run_argv("main.py", ["x"])
        ['python3', 'main.py', 'x']
    """

    model_config = pydantic.ConfigDict(strict=True, extra="forbid", frozen=True)

    name: Name
    aliases: list[Name] = []
    template: Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")] = "runner"
    """The template its runner sandboxes are made from."""
    entry: Annotated[str, pydantic.StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]
    """The file name a request's ``code`` is written to."""
    version: Argv
    """A command whose output starts with (or holds) the version, ``3.11.2``."""
    compile: Argv | None = None
    run: Argv
    env: dict[str, str] = {}
    """Added to the environment of the compile and run commands."""
    compile_timeout: Annotated[float, pydantic.Field(gt=0, le=600)] = 30.0
    """Seconds of wall-clock time the compile step may take."""
    compile_memory_mb: Annotated[int, pydantic.Field(ge=16)] = 1024
    """The compile step's memory limit (compilers need more than most programs)."""

    @property
    def compiled(self) -> bool:
        return self.compile is not None

    def compile_argv(self, entry: str) -> list[str]:
        assert self.compile is not None
        return _fill(self.compile, entry)

    def run_argv(self, entry: str, args: Sequence[str] = ()) -> list[str]:
        return [*_fill(self.run, entry), *args]


def _fill(argv: Iterable[str], entry: str) -> list[str]:
    stem = entry.rsplit(".", 1)[0] if "." in entry.lstrip(".") else entry
    return [a.replace("{entry}", entry).replace("{stem}", stem) for a in argv]


def parse_version(output: str) -> str | None:
    """The first ``N.N[.N...]`` of a version command's output (``rustc 1.63.0`` -> ``1.63.0``)."""
    found = _VERSION.search(output)
    return found.group(0) if found else None


def load(path: Path) -> Language:
    try:
        data = tomllib.loads(path.read_text())
        language = Language.model_validate(data)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LanguageError(f"{path}: {exc}") from None
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise LanguageError(f"{path}: {problems}") from None
    if language.name != path.stem:
        raise LanguageError(f"{path}: the file of language {language.name!r} must be named {language.name}.toml")
    return language


class Catalog:
    """Every language this server runs, found by name or alias, with its detected version.

    Example:
        >>> catalog = Catalog.from_dirs([operator_dir, BUILTIN_DIR])
        >>> catalog.find("py").name
        'python'
    """

    def __init__(self, languages: Iterable[Language]) -> None:
        self.languages: dict[str, Language] = {}
        self._names: dict[str, Language] = {}
        for language in languages:
            self.languages.setdefault(language.name, language)
        for language in self.languages.values():
            for name in (language.name, *language.aliases):
                if name in self._names and self._names[name] is not language:
                    raise LanguageError(f"{name!r} names both {self._names[name].name} and {language.name}")
                self._names[name] = language
        self.versions: dict[str, str] = {}
        """Language name -> version, filled in by whoever ran the version commands."""

    @classmethod
    def from_dirs(cls, dirs: Iterable[Path]) -> Catalog:
        """The languages of ``dirs``, a name in an earlier directory hiding it in later ones."""
        return cls(load(path) for d in dirs if d.is_dir() for path in sorted(d.glob("*.toml")))

    @property
    def templates(self) -> set[str]:
        return {language.template for language in self.languages.values()}

    def find(self, name: str, version: str | None = None) -> Language:
        """The language ``name`` (or an alias) names; with ``version``, only if its version is
        that one or starts with it at a dot (``3.11`` matches ``3.11.2``; ``*`` matches any)."""
        language = self._names.get(name.lower())
        if language is None:
            known = ", ".join(sorted(self.languages))
            raise LanguageError(f"language {name!r} is not one of this server's: {known}")
        have = self.versions.get(language.name)
        if version not in (None, "", "*", "latest") and not (
            have is not None and (have == version or have.startswith(f"{version}."))
        ):
            raise LanguageError(
                f"{language.name} {version} is not available: this server has {language.name} {have or '(unknown)'}"
            )
        return language
