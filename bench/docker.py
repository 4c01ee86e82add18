"""Docker baseline: `docker run --rm --network none IMAGE true` and `docker exec CONTAINER true`.

Starts a private `dockerd` (Debian's docker.io, installed with apt-get if missing) with its own
data root under /var/tmp, no iptables and no bridge, imports the sandlot `base` template's
rootfs as an image (this machine cannot pull), times the two commands, and at the end removes
the containers, stops that dockerd by its PID and deletes its data root, also on failure.

The template's files are owned by uid 100000+ (sandlot maps them to root in a user namespace).
Docker runs without a user namespace here, so the container runs `--user 0`: root over files it
does not own, which works for `true` through root's capabilities. bench/sdk.py runs this in
the same run as the sandlot figures.

    sudo .venv/bin/python bench/docker.py [--runs 20] [--exec-runs 100]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from runtime import Figure

IMAGE = "sandlot-bench-base"
CGROUPS = Path("/sys/fs/cgroup")
TEMPLATE_ROOTFS = Path("/var/cache/sandlot/templates/base/current/rootfs")


class DockerUnavailable(Exception):
    """dockerd could not be installed or started here; the message says why."""


def ensure_installed() -> None:
    if shutil.which("dockerd") and Path("/usr/bin/docker").exists():
        return
    done = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "docker.io"],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise DockerUnavailable(f"apt-get install docker.io failed: {done.stderr.strip()[-500:]}")


@contextlib.contextmanager
def dockerd(under: str = "/var/tmp") -> Iterator[list[str]]:
    """A private dockerd; yields the `docker` command line that talks to it."""
    ensure_installed()
    root = Path(tempfile.mkdtemp(prefix="sandlot-bench-docker-", dir=under))
    os.chmod(root, 0o711)
    sock = root / "docker.sock"
    docker = ["/usr/bin/docker", "-H", f"unix://{sock}"]
    # What dockerd makes outside its roots and leaves: a `docker` cgroup in every hierarchy,
    # /etc/docker/key.json, /run/docker/plugins, /run/containerd/s. Removed if we made them.
    hierarchies = [CGROUPS, *(d for d in CGROUPS.iterdir() if d.is_dir() and not d.is_symlink())]
    cgroup_parents = [d / "docker" for d in hierarchies if not (d / "docker").exists()]
    made_dirs = [d for d in map(Path, ["/etc/docker", "/run/docker", "/run/containerd"]) if not d.exists()]
    with open(root / "dockerd.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            ["dockerd", "--data-root", root / "data", "--exec-root", root / "exec", "--pidfile", root / "dockerd.pid",
             "-H", f"unix://{sock}", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
             "--ip-masq=false", "--bridge=none"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([*docker, "version"], capture_output=True, check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "dockerd.log").read_text(errors="replace").strip().splitlines()[-5:]
                raise DockerUnavailable("dockerd did not start: " + " | ".join(tail))
            time.sleep(0.2)
        yield docker
    finally:
        if proc.poll() is None:
            ids = subprocess.run([*docker, "ps", "-aq"], capture_output=True, text=True, check=False).stdout.split()
            if ids:
                subprocess.run([*docker, "rm", "-f", *ids], capture_output=True, check=False)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # dockerd unmounts its layers when it stops; anything left would make rmtree fail.
        with open("/proc/self/mountinfo") as f:
            left = [line.split()[4] for line in f if line.split()[4].startswith(str(root))]
        for mountpoint in sorted(left, reverse=True):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
        for made in made_dirs:
            shutil.rmtree(made, ignore_errors=True)
        for parent in cgroup_parents:
            with contextlib.suppress(OSError):
                parent.rmdir()  # fails, harmlessly, unless it is there and empty


def timed_runs(argv: list[str], runs: int, warmup: int = 0) -> list[float]:
    for _ in range(warmup):
        subprocess.run(argv, check=True, capture_output=True)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


@contextlib.contextmanager
def base_image() -> Iterator[list[str]]:
    """A private dockerd holding the `base` template's rootfs as image `IMAGE`; yields the
    `docker` command line. Raises DockerUnavailable when dockerd cannot run here."""
    with dockerd() as docker:
        tar = subprocess.Popen(["tar", "-C", TEMPLATE_ROOTFS, "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [*docker, "import", "-", IMAGE], stdin=tar.stdout, capture_output=True, text=True, check=False
        )
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise DockerUnavailable(f"docker import failed: {imported.stderr.strip()[-500:]}")
        yield docker


def docker_figures(runs: int, exec_runs: int) -> list[Figure]:
    """`docker run` and `docker exec` of `true`; raises DockerUnavailable when dockerd cannot run."""
    with base_image() as docker:
        run = timed_runs([*docker, "run", "--rm", "--network", "none", "--user", "0", IMAGE, "true"], runs, warmup=2)
        container = subprocess.run(
            [*docker, "run", "-d", "--network", "none", "--user", "0", IMAGE, "sleep", "infinity"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        execs = timed_runs([*docker, "exec", container, "true"], exec_runs, warmup=10)
    return [
        Figure("docker run --rm --network none IMAGE true", run),
        Figure("docker exec CONTAINER true", execs),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--exec-runs", type=int, default=100)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-ups of `finally`
    for f in docker_figures(args.runs, args.exec_runs):
        print(f"{f.name:48} {len(f.samples):5} {f.p50:8.2f} {f.p99:8.2f}")


if __name__ == "__main__":
    main()
