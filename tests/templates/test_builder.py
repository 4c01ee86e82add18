from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandlot import config
from sandlot.templates import builder, spec

BASE = 100000
TINY_RUN = ["echo hello > /hello.txt"]


def no_mounts_under(path: Path) -> bool:
    return builder.mounts_under(path) == []


def processes_mentioning(path: Path) -> list[int]:
    """Pids whose command line names `path`: a build that left a child running."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def cap_net_raw_xattr() -> bytes:
    """A version-2 ``security.capability`` value granting cap_net_raw (13), effective."""
    return struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


# -- the ownership shift, on a small tree ----------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin/su").write_bytes(b"\x7fELF")
    os.chmod(root / "bin/su", 0o4755)
    (root / "bin/wall").write_bytes(b"\x7fELF")
    os.chown(root / "bin/wall", 0, 5)
    os.chmod(root / "bin/wall", 0o2755)
    (root / "bin/ping").write_bytes(b"\x7fELF")
    os.chmod(root / "bin/ping", 0o755)
    os.setxattr(root / "bin/ping", "security.capability", cap_net_raw_xattr())
    (root / "home/user").mkdir(parents=True)
    os.chown(root / "home/user", 1000, 1000)
    (root / "var/mail").mkdir(parents=True)
    os.chown(root / "var/mail", 0, 8)
    os.chmod(root / "var/mail", 0o2775)
    (root / "bin/linked").write_text("x")
    os.chown(root / "bin/linked", 7, 7)
    os.link(root / "bin/linked", root / "etc/also-linked")
    os.symlink("/etc/hostname", root / "etc/host-symlink")  # absolute: must not touch the host's
    return root


def test_shift_ownership(tree: Path) -> None:
    host_hostname = os.lstat("/etc/hostname")
    size = builder.shift_ownership(tree, BASE)

    def owner(rel: str) -> tuple[int, int]:
        st = os.lstat(tree / rel)
        return st.st_uid, st.st_gid

    assert owner("") == (BASE, BASE)
    assert owner("etc/passwd") == (BASE, BASE)
    assert owner("home/user") == (BASE + 1000, BASE + 1000)
    assert owner("var/mail") == (BASE, BASE + 8)
    assert owner("etc/host-symlink") == (BASE, BASE)
    assert owner("bin/linked") == owner("etc/also-linked") == (BASE + 7, BASE + 7)  # shifted once
    assert stat.S_IMODE(os.lstat(tree / "bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(tree / "bin/wall").st_mode) == 0o2755
    assert stat.S_IMODE(os.lstat(tree / "var/mail").st_mode) == 0o2775
    assert not os.listxattr(tree / "bin/ping"), "a file capability no sandbox holds makes exec fail"
    after = os.lstat("/etc/hostname")
    assert (after.st_uid, after.st_gid) == (host_hostname.st_uid, host_hostname.st_gid)
    assert size > 0


def test_shift_zero_changes_nothing(tree: Path) -> None:
    before = {p: os.lstat(p) for p in tree.rglob("*")}
    assert builder.shift_ownership(tree, 0) > 0
    for path, st in before.items():
        assert (os.lstat(path).st_uid, os.lstat(path).st_mode) == (st.st_uid, st.st_mode)
    assert not os.listxattr(tree / "bin/ping")


def test_shift_refuses_ids_a_sandbox_cannot_map(tree: Path) -> None:
    os.chown(tree / "etc/passwd", 70000, 0)
    with pytest.raises(spec.TemplateError, match="passwd is owned by 70000:0"):
        builder.shift_ownership(tree, BASE)


def test_shift_is_fast_enough(tmp_path: Path) -> None:
    root = tmp_path / "many"
    for d in range(100):
        (root / str(d)).mkdir(parents=True)
        for f in range(100):
            (root / str(d) / str(f)).write_bytes(b"")
    started = time.monotonic()
    builder.shift_ownership(root, BASE)
    assert time.monotonic() - started < 5  # 10k files; the base template has ~45k
    assert os.lstat(root / "99/99").st_uid == BASE


# -- settings, resolve -----------------------------------------------------------------------------


def test_no_userns_means_no_shift_and_another_digest(tmp_path: Path) -> None:
    with_userns = config.RuntimeSettings(cache_dir=tmp_path)
    without = config.RuntimeSettings(cache_dir=tmp_path, userns=False)
    tiny = spec.TemplateSpec(name="tiny")
    assert builder.ownership_shift(with_userns) == BASE
    assert builder.ownership_shift(without) == 0
    assert builder.target(tiny, with_userns) != builder.target(tiny, without)


def test_resolve_unbuilt(tmp_path: Path) -> None:
    settings = config.RuntimeSettings(cache_dir=tmp_path)
    with pytest.raises(
        spec.TemplateError, match=r"template nope is not built \(run: sandlot template build nope\)"
    ):
        builder.resolve("nope", settings)


# -- a real build of a tiny template ---------------------------------------------------------------


class Built:
    def __init__(self, cache: Path, specs_dir: Path, path: Path, seconds: float, steps: list[str]) -> None:
        self.cache = cache
        self.specs_dir = specs_dir
        self.path = path
        self.seconds = seconds
        self.steps = steps
        self.settings = config.RuntimeSettings(cache_dir=cache)
        self.spec = spec.load("tiny", [specs_dir])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    top = tmp_path_factory.mktemp("tiny")
    cache, specs_dir = top / "cache", top / "specs"
    specs_dir.mkdir()
    (specs_dir / "tiny.toml").write_text(f"run = {json.dumps(TINY_RUN)}\n[env]\nGREETING = 'hello'\n")
    settings = config.RuntimeSettings(cache_dir=cache)
    steps: list[str] = []

    def progress(step: str, fraction: float) -> None:
        assert 0.0 <= fraction <= 1.0
        if not steps or steps[-1] != step:
            steps.append(step)

    started = time.monotonic()
    try:
        try:
            path = builder.build(spec.load("tiny", [specs_dir]), settings, progress=progress)
        except spec.CommandError as exc:
            pytest.fail(f"{exc}\n{exc.output_tail}")
        yield Built(cache, specs_dir, path, time.monotonic() - started, steps)
    finally:
        assert no_mounts_under(top)
        shutil.rmtree(top)


@pytest.mark.slow
def test_tiny_build_layout(tiny: Built) -> None:
    home = tiny.settings.templates_dir / "tiny"
    digest = tiny.spec.digest(BASE)
    assert tiny.path == home / digest
    assert os.readlink(home / "current") == digest
    assert tiny.steps == list(builder.STEPS)
    metadata = json.loads((tiny.path / "template.json").read_text())
    assert metadata["name"] == "tiny" and metadata["digest"] == digest
    assert metadata["env"] == {"GREETING": "hello"}
    assert metadata["user"] == "user" and metadata["workdir"] == "/home/user"
    assert metadata["spec"]["run"] == TINY_RUN
    assert metadata["size_bytes"] > 50_000_000
    assert "built_at" in metadata
    assert builder.resolve("tiny", tiny.settings) == tiny.path
    assert [p.name for p in home.iterdir() if p.name.startswith(".build-")] == []
    assert no_mounts_under(tiny.cache)


@pytest.mark.slow
def test_tiny_build_rootfs(tiny: Built) -> None:
    rootfs = tiny.path / "rootfs"
    assert (rootfs / "hello.txt").read_text() == "hello\n"
    for rel in ["", "etc/passwd", "hello.txt", "usr/bin/bash"]:
        st = os.lstat(rootfs / rel)
        assert (st.st_uid, st.st_gid) == (BASE, BASE), rel
    home = os.lstat(rootfs / "home/user")
    assert (home.st_uid, home.st_gid) == (BASE + 1000, BASE + 1000)
    setuid = next(p for p in (rootfs / "usr/bin/su", rootfs / "usr/bin/passwd") if p.exists())
    assert os.lstat(setuid).st_mode & stat.S_ISUID
    assert os.lstat(setuid).st_uid == BASE
    assert "user:x:1000:1000::/home/user:/bin/bash" in (rootfs / "etc/passwd").read_text().splitlines()
    sudoers = rootfs / "etc/sudoers.d/90-sandlot-user"
    assert stat.S_IMODE(os.lstat(sudoers).st_mode) == 0o440
    assert "user ALL=(ALL:ALL) NOPASSWD: ALL" in sudoers.read_text()
    for name in ["resolv.conf", "hostname", "hosts"]:
        assert stat.S_ISREG(os.lstat(rootfs / "etc" / name).st_mode), name
    assert (rootfs / "etc/hostname").read_text() == "sandbox\n"
    assert not (rootfs / "usr/sbin/policy-rc.d").exists()
    assert list((rootfs / "var/lib/apt/lists").iterdir()) == []


@pytest.mark.slow
def test_second_build_returns_at_once(tiny: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached build must not run anything")

    monkeypatch.setattr(builder._Build, "run", fail)
    monkeypatch.setattr(builder.subprocess, "Popen", fail)
    started = time.monotonic()
    assert builder.build(tiny.spec, tiny.settings) == tiny.path
    assert time.monotonic() - started < 1


@pytest.mark.slow
def test_failed_build_changes_nothing(tiny: Built) -> None:
    home = tiny.settings.templates_dir / "tiny"
    broken = tiny.spec.model_copy(update={"run": [*TINY_RUN, "echo boom >&2; exit 3"]})
    with pytest.raises(spec.CommandError) as caught:
        builder.build(broken, tiny.settings)
    error = caught.value
    assert (error.step, error.returncode) == ("commands", 3)
    assert "boom" in error.output_tail
    assert error.log_path is not None and "boom" in error.log_path.read_text()
    assert os.readlink(home / "current") == tiny.path.name
    assert not (home / broken.digest(BASE)).exists()
    assert no_mounts_under(tiny.cache)
    leftovers = [p for p in home.iterdir() if p.name.startswith(".build-")]
    assert len(leftovers) == 1
    assert processes_mentioning(leftovers[0]) == []

    builder.build(tiny.spec, tiny.settings)  # the next build removes the failed one
    assert not leftovers[0].exists()
    assert os.readlink(home / "current") == tiny.path.name


@pytest.mark.slow
def test_interrupted_debootstrap_leaves_no_mounts_or_processes(tiny: Built) -> None:
    home = tiny.settings.templates_dir / "tiny"
    other = tiny.spec.model_copy(update={"run": ["true"]})
    before = set(home.iterdir())

    def interrupt(step: str, fraction: float) -> None:
        if step == "debootstrap" and fraction > 0.55:  # unpacking: debootstrap has mounted /proc
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        builder.build(other, tiny.settings, progress=interrupt)
    assert no_mounts_under(tiny.cache)
    leftovers = [p for p in set(home.iterdir()) - before if p.name.startswith(".build-")]
    assert len(leftovers) == 1
    assert processes_mentioning(leftovers[0]) == []
    assert os.readlink(home / "current") == tiny.path.name
    assert not (home / other.digest(BASE)).exists()


@pytest.mark.slow
def test_next_build_unmounts_what_a_killed_build_left(tiny: Built) -> None:
    home = tiny.settings.templates_dir / "tiny"
    proc = home / ".build-killed/rootfs/proc"
    proc.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(proc)], check=True)
    try:
        assert builder.mounts_under(home) == [str(proc)]
        builder.build(tiny.spec, tiny.settings)
        assert no_mounts_under(home)
        assert not (home / ".build-killed").exists()
    finally:
        if builder.mounts_under(proc):
            subprocess.run(["umount", "-l", str(proc)], check=True)


@pytest.mark.slow
def test_list_templates(tiny: Built) -> None:
    infos = {info.name: info for info in builder.list_templates(tiny.settings, [tiny.specs_dir])}
    info = infos["tiny"]
    assert info.digest == info.spec_digest == tiny.path.name
    assert info.up_to_date and info.path == tiny.path
    assert info.size_bytes is not None and info.size_bytes > 50_000_000
    assert info.built_at is not None
    assert "base" in infos  # has a spec; not built in this cache
    assert infos["base"].digest is None and not infos["base"].up_to_date

    changed = tiny.specs_dir / "changed"
    changed.mkdir()
    (changed / "tiny.toml").write_text('run = ["true"]\n')
    info = {i.name: i for i in builder.list_templates(tiny.settings, [changed])}["tiny"]
    assert info.digest == tiny.path.name and info.spec_digest != info.digest and not info.up_to_date


# -- the base template that scripts/setup built ----------------------------------------------------


@pytest.fixture(scope="module")
def base_rootfs() -> Path:
    settings = config.Settings.from_env().runtime
    try:
        path = builder.resolve("base", settings)
    except spec.TemplateError as exc:
        pytest.fail(f"{exc} (scripts/setup builds it into {settings.cache_dir})")
    metadata = builder.read_metadata(path)
    assert metadata["digest"] == spec.load("base").digest(builder.ownership_shift(settings)), (
        "the base template is outdated: run scripts/setup"
    )
    return path / "rootfs"


def resolve_inside(rootfs: Path, rel: str) -> Path:
    """Follow symlinks as the sandbox would see them, never leaving `rootfs`."""
    path = Path("/") / rel
    for _ in range(40):
        host = rootfs / path.relative_to("/")
        if not host.is_symlink():
            return host
        target = Path(os.readlink(host))
        path = Path(os.path.normpath(target if target.is_absolute() else path.parent / target))
    raise AssertionError(f"symlink loop at {rel}")


def test_base_has_the_tools(base_rootfs: Path) -> None:
    for rel in ["usr/bin/python", "usr/bin/python3", "usr/bin/pip", "usr/bin/node", "usr/bin/npm",
                "usr/bin/git", "usr/bin/curl", "usr/bin/sudo", "usr/bin/bash"]:
        real = resolve_inside(base_rootfs, rel)
        assert real.is_file(), rel
        assert os.stat(real).st_mode & 0o111, rel
    assert os.readlink(base_rootfs / "usr/bin/python") == "python3"
    assert not list(base_rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"))


def test_base_user_and_sudo(base_rootfs: Path) -> None:
    passwd = (base_rootfs / "etc/passwd").read_text().splitlines()
    assert "user:x:1000:1000::/home/user:/bin/bash" in passwd
    home = os.lstat(base_rootfs / "home/user")
    assert (home.st_uid, home.st_gid) == (BASE + 1000, BASE + 1000)
    sudoers = base_rootfs / "etc/sudoers.d/90-sandlot-user"
    st = os.lstat(sudoers)
    assert stat.S_IMODE(st.st_mode) == 0o440 and st.st_uid == BASE
    assert "user ALL=(ALL:ALL) NOPASSWD: ALL" in sudoers.read_text()
    sudo = os.lstat(base_rootfs / "usr/bin/sudo")
    assert sudo.st_mode & stat.S_ISUID and sudo.st_uid == BASE
    # Sandboxes hold no CAP_NET_RAW: ping goes through ICMP datagram sockets, without a file cap.
    assert "security.capability" not in os.listxattr(resolve_inside(base_rootfs, "usr/bin/ping"))


def test_base_tools_run(base_rootfs: Path) -> None:
    """Run each tool as the sandbox's user would be on the host (uid base+1000): read-only."""
    tools = [
        ["python", "-B", "--version"],
        ["node", "--version"],
        ["git", "--version"],
        ["curl", "--version"],
    ]
    for argv in tools:
        chroot = ["chroot", f"--userspec={BASE + 1000}:{BASE + 1000}", str(base_rootfs)]
        clean_env = ["/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=/nonexistent"]
        result = subprocess.run(
            [*chroot, *clean_env, *argv], check=False, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (argv, result.stderr)
        assert result.stdout.strip(), argv
