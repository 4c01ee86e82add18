"""Language files (`sandlot.runner.languages`): what a file must say, how requests find one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sandlot.runner import languages
from sandlot.runner.languages import Catalog, LanguageError


def test_the_builtin_languages_load() -> None:
    catalog = Catalog.from_dirs([languages.BUILTIN_DIR])
    assert set(catalog.languages) == {"bash", "javascript", "python", "rust", "typescript"}
    assert catalog.templates == {"runner"}
    rust = catalog.find("rs")
    assert rust.compiled and rust.compile_argv("main.rs")[-3:] == ["-o", "main", "main.rs"]
    assert rust.run_argv("main.rs", ["1", "2"]) == ["./main", "1", "2"]
    assert catalog.find("TS").run_argv("app/index.ts") == ["node", "app/index.js"]


def test_an_operator_file_replaces_a_builtin_and_adds_languages(tmp_path: Path) -> None:
    (tmp_path / "python.toml").write_text(
        'name = "python"\nentry = "prog.py"\nversion = ["python3", "-V"]\nrun = ["python3", "-S", "{entry}"]\n'
    )
    (tmp_path / "lua.toml").write_text(
        'name = "lua"\ntemplate = "lua"\nentry = "main.lua"\nversion = ["lua", "-v"]\nrun = ["lua", "{entry}"]\n'
    )
    catalog = Catalog.from_dirs([tmp_path, languages.BUILTIN_DIR])
    assert catalog.find("python").entry == "prog.py"
    assert catalog.find("lua").template == "lua" and catalog.templates == {"runner", "lua"}
    with pytest.raises(LanguageError, match="not one of"):
        catalog.find("py")  # the operator's python has no aliases


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('name = "go"\nentry = "main.go"\nrun = ["go", "run", "{entry}"]\n', "version"),
        ('name = "go"\nentry = "main.go"\nversion = ["go"]\nrun = []\n', "run"),
        ('name = "go"\nentry = "../main.go"\nversion = ["go"]\nrun = ["go"]\n', "entry"),
        ('name = "go"\nentry = "main.go"\nversion = ["go"]\nrun = ["go"]\nsurprise = 1\n', "surprise"),
        ('name = "Go!"\nentry = "main.go"\nversion = ["go"]\nrun = ["go"]\n', "name"),
        ('name = "golang"\nentry = "main.go"\nversion = ["go"]\nrun = ["go"]\n', "must be named golang.toml"),
        ("name = \n", "go.toml"),
    ],
)
def test_a_bad_language_file_says_what_to_fix(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "go.toml").write_text(text)
    with pytest.raises(LanguageError, match=says):
        Catalog.from_dirs([tmp_path])


def test_two_languages_cannot_share_a_name(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.toml").write_text(
            f'name = "{name}"\naliases = ["same"]\nentry = "m"\nversion = ["v"]\nrun = ["r"]\n'
        )
    with pytest.raises(LanguageError, match="'same' names both"):
        Catalog.from_dirs([tmp_path])


def test_versions_match_exactly_or_by_prefix() -> None:
    catalog = Catalog.from_dirs([languages.BUILTIN_DIR])
    catalog.versions["python"] = "3.11.2"
    for asked in (None, "", "*", "latest", "3", "3.11", "3.11.2"):
        assert catalog.find("python", asked).name == "python"
    for asked in ("3.1", "3.11.20", "2", "3.12"):
        with pytest.raises(LanguageError, match=re.escape("python 3.11.2")):
            catalog.find("python", asked)


@pytest.mark.parametrize(
    ("output", "version"),
    [("Python 3.11.2\n", "3.11.2"), ("v18.20.4\n", "18.20.4"), ("rustc 1.63.0\n", "1.63.0"),
     ("Version 4.8.4", "4.8.4"), ("5.2.15(1)-release", "5.2.15"), ("no digits", None), ("7", None)],
)
def test_parse_version(output: str, version: str | None) -> None:
    assert languages.parse_version(output) == version
