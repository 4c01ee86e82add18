"""The OCI runtime config (``config.json``) of a sandbox's bundle.

Security layers, outermost first:

- a user namespace (when `RuntimeSettings.userns` is on): root inside is an unprivileged uid on
  the host, so a process that escapes the mount namespace owns nothing there;
- the capability bounding set of Docker's default profile, without CAP_SYS_ADMIN,
  CAP_NET_ADMIN, CAP_SYS_PTRACE and the like, and without CAP_NET_RAW: no raw sockets, while
  ``ping`` still works through ICMP datagram sockets, which the network hook opens to every
  group of the sandbox (``net.ipv4.ping_group_range``);
- the default-deny seccomp allowlist of `sandlot.runtime.seccomp`;
- no core dumps (``RLIMIT_CORE`` 0/0): a crash leaves no memory image to fill the disk with;
- masked and read-only ``/proc`` and ``/sys`` paths;
- ``no_new_privs`` stays off on purpose: the ``user`` user has passwordless ``sudo`` (as in
  E2B), and sudo is a setuid program. Inside a user namespace that gains nothing on the host.
  Runner sandboxes (`models.SandboxSpec.runner`) are the exception: they run untrusted code
  that never needs root, so they get ``no_new_privs`` and a read-only root, and their
  writable places are bind mounts of one scratch tmpfs that the driver empties between runs.

runc makes the network namespace (inside the user namespace, see `sandlot.runtime.network`),
which is also what lets ``/sys`` be a fresh read-only sysfs showing the sandbox's own
interfaces; a ``createRuntime`` hook wires the veth into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandlot.runtime import cgroups, models, seccomp

__all__ = ["INIT_PATH", "INIT_PORT", "SCRATCH_DIRS", "bundle_config"]

INIT_PATH = "/.sandlot/init"
"""Where the sandbox's PID 1, sandlot-init, is bind-mounted (read-only) inside the sandbox."""
INIT_PORT = 49983
"""The port sandlot-init listens on inside the sandbox (envd's port in E2B)."""

ID_RANGE = 65536

SCRATCH_DIRS = {"tmp": "/tmp", "var-tmp": "/var/tmp", "shm": "/dev/shm"}
"""A runner sandbox's writable places: each subdirectory of the scratch tmpfs and where it is
bound inside (the template's working directory, from ``home``, comes on top)."""

_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL", "CAP_AUDIT_WRITE",
]

_MASKED = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap", "/sys/kernel/debug",
    "/sys/kernel/security",
]

_READONLY = [
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
]


def bundle_config(
    *,
    hostname: str,
    env: Mapping[str, str],
    limits: models.Limits,
    network_hook: list[str] | None,
    cgroups_path: str,
    criu_config: Path,
    init_binary: str,
    userns_base: int | None,
    nofile: int,
    scratch: Path | None = None,
    workdir: str = "/home/user",
) -> dict[str, Any]:
    """The config.json of a sandbox whose rootfs is mounted at ``<bundle>/rootfs``.

    ``network_hook`` wires the veth once the namespaces exist; a restore leaves it out and
    wires the sandbox after CRIU (so no packet meets a half-restored socket). ``criu_config``
    is the file of CRIU options runc hands to CRIU at checkpoint and restore. With
    ``scratch`` (the host directory holding a runner sandbox's scratch space) the root is
    read-only, privileges cannot be gained, and `SCRATCH_DIRS` plus ``workdir`` are bound from
    it.
    """
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup", "network")]
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path,
        "resources": _resources(limits),
        "maskedPaths": _MASKED,
        "readonlyPaths": _READONLY,
        "rootfsPropagation": "private",
        "seccomp": seccomp.profile(),
    }
    if userns_base is not None:
        namespaces.append({"type": "user"})
        mapping = [{"containerID": 0, "hostID": userns_base, "size": ID_RANGE}]
        linux["uidMappings"] = mapping
        linux["gidMappings"] = mapping
    caps = list(_CAPABILITIES)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": [INIT_PATH, "--listen", f"0.0.0.0:{INIT_PORT}", "--token-fd", "3", "--ready-fd", "4"],
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": "/",
            "capabilities": dict.fromkeys(("bounding", "effective", "permitted"), caps),
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            ],
            "noNewPrivileges": scratch is not None,
            "oomScoreAdj": 500,
        },
        "root": {"path": "rootfs", "readonly": scratch is not None},
        "hostname": hostname,
        "mounts": _mounts(init_binary, scratch, workdir),
        # Runs in the host's namespaces once the sandbox's exist.
        "hooks": {"createRuntime": [{"path": init_binary, "args": ["sandlot-init", *network_hook]}]}
        if network_hook is not None else {},
        "annotations": {"org.criu.config": str(criu_config)},
        "linux": linux,
    }


def _resources(limits: models.Limits) -> dict[str, Any]:
    memory = limits.memory_mb * 1024 * 1024
    period = cgroups.CPU_PERIOD_US
    return {
        "devices": [{"allow": False, "access": "rwm"}],
        # swap = memory: no swap at all, so the limit is a real one and OOM comes quickly.
        "memory": {"limit": memory, "swap": memory},
        "cpu": {"period": period, "quota": int(limits.cpu_cores * period)},
        "pids": {"limit": limits.pids},
    }


def _mounts(init_binary: str, scratch: Path | None, workdir: str) -> list[dict[str, Any]]:
    nodev = ["nosuid", "noexec", "nodev"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": [*nodev, "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": nodev},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*nodev, "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": [*nodev, "relatime", "ro"]},
        {"destination": INIT_PATH, "type": "bind", "source": init_binary,
         "options": ["bind", "ro", "nosuid", "nodev"]},
    ]
    if scratch is None:
        return mounts
    binds = {**SCRATCH_DIRS, "home": workdir}
    mounts = [m for m in mounts if m["destination"] not in binds.values()]
    mounts += [
        {"destination": inside, "type": "bind", "source": str(scratch / name),
         "options": ["bind", "nosuid", "nodev", *(["noexec"] if name == "shm" else [])]}
        for name, inside in binds.items()
    ]
    return mounts

