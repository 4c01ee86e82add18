from __future__ import annotations

from pathlib import Path

import pytest

from sandlot.templates import spec


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    template = spec.TemplateSpec(name="tiny")
    assert template.suite == "bookworm"
    assert template.user == "user"
    assert template.workdir == "/home/user"
    assert template.packages == [] and template.run == [] and template.env == {}


def test_load_reads_toml(tmp_path: Path) -> None:
    write(
        tmp_path,
        "tiny",
        'description = "d"\npackages = ["curl", "python3=3.11.2-1+b1"]\nrun = ["true"]\n[env]\nA = "1"\n',
    )
    template = spec.load("tiny", [tmp_path])
    assert template.name == "tiny"  # taken from the file name
    assert template.packages == ["curl", "python3=3.11.2-1+b1"]
    assert template.env == {"A": "1"}


def test_search_dirs_come_before_builtin(tmp_path: Path) -> None:
    write(tmp_path, "base", 'description = "mine"\n')
    assert spec.load("base", [tmp_path]).description == "mine"
    assert spec.load("base").description != "mine"


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        ('pakages = ["curl"]\n', "pakages", "unknown field"),
        ('packages = ["curl", "Not A Package"]\n', "packages.1", "apt package name"),
        ('packages = "curl"\n', "packages", "valid list"),
        ('run = ["true", "  "]\n', "run", "command 1 is empty"),
        ("[env]\n'1X' = 'y'\n", "env", "'1X'"),
        ("[env]\nX = 1\n", "env.X", "valid string"),
        ('workdir = "home/user"\n', "workdir", "absolute path"),
        ('user = "Root User"\n', "user", "valid user name"),
        ('suite = "Bookworm!"\n', "suite", "suite"),
        ('name = "other"\n', "name", "must match the file name"),
    ],
)
def test_bad_spec_names_the_field(tmp_path: Path, text: str, field: str, hint: str) -> None:
    path = write(tmp_path, "tiny", text)
    with pytest.raises(spec.TemplateError) as caught:
        spec.load("tiny", [tmp_path])
    message = str(caught.value)
    assert str(path) in message
    assert f"{field}:" in message
    assert hint in message


def test_bad_toml(tmp_path: Path) -> None:
    write(tmp_path, "tiny", "packages = [\n")
    with pytest.raises(spec.TemplateError, match="not valid TOML"):
        spec.load("tiny", [tmp_path])


def test_missing_template_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(spec.TemplateError) as caught:
        spec.load("nope", [tmp_path])
    message = str(caught.value)
    assert "no template named 'nope'" in message
    assert str(tmp_path) in message and str(spec.BUILTIN_SPECS_DIR) in message
    assert "base" in message  # lists what exists


@pytest.mark.parametrize("name", ["../base", "Base", "a/b", "", ".hidden"])
def test_bad_names_never_reach_the_filesystem(name: str) -> None:
    with pytest.raises(spec.TemplateError, match="not a valid template name"):
        spec.load(name)


def test_digest_changes_with_what_shapes_the_files() -> None:
    template = spec.TemplateSpec(name="t", packages=["curl"], run=["true"], env={"A": "1"})
    digest = template.digest(100000)
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert template.digest(100000) == digest
    changed = [
        template.model_copy(update={"packages": ["curl", "git"]}),
        template.model_copy(update={"packages": ["wget"]}),
        template.model_copy(update={"run": ["true", "false"]}),
        template.model_copy(update={"env": {"A": "2"}}),
        template.model_copy(update={"suite": "trixie"}),
        template.model_copy(update={"user": "dev"}),
    ]
    for other in changed:
        assert other.digest(100000) != digest
    assert template.digest(200000) != digest
    assert template.digest(0) != digest


def test_digest_ignores_order_that_does_not_matter() -> None:
    one = spec.TemplateSpec(name="t", packages=["curl", "git"], env={"A": "1", "B": "2"})
    two = spec.TemplateSpec(name="t", packages=["git", "curl", "git"], env={"B": "2", "A": "1"})
    assert one.digest(100000) == two.digest(100000)


def test_digest_covers_builder_version(monkeypatch: pytest.MonkeyPatch) -> None:
    template = spec.TemplateSpec(name="t")
    before = template.digest(100000)
    monkeypatch.setattr(spec, "BUILDER_VERSION", spec.BUILDER_VERSION + 1)
    assert template.digest(100000) != before


def test_builtin_base_spec() -> None:
    base = spec.load("base")
    for package in ["python3", "python-is-python3", "python3-pip", "nodejs", "npm", "git", "curl", "sudo"]:
        assert package in base.packages
    assert base.user == "user" and base.workdir == "/home/user"
    assert "base" in spec.available()
