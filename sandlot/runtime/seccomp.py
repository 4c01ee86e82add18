"""The seccomp filter of every sandbox: a default-deny allowlist in the OCI config's shape.

Modelled on Docker's default profile, tightened for a tenant sandbox: every system call not
named here fails with EPERM. What is left out on purpose, and why:

- creating or joining namespaces (``unshare``/``clone`` with a ``CLONE_NEW*`` flag,
  ``setns``): a nested user namespace hands root-like capabilities over a fresh kernel attack
  surface, and each one counts against the host's ``user.max_user_namespaces``, so a tenant
  could use them all up and stop every new sandbox;
- ``clone3`` answers ENOSYS rather than EPERM: its flags sit in memory where a filter cannot
  look, and ENOSYS is what makes glibc (2.34+) fall back to ``clone``, whose flags it can;
- the mount API old and new (``mount``, ``fsopen``, ``open_tree``, ``move_mount``...), and
  io_uring, which runs file and socket work where seccomp never sees it;
- ``userfaultfd``, ``bpf``, ``perf_event_open``, the keyring, kexec, modules, clocks, swap,
  quotas, ``open_by_handle_at``, ``kcmp``/``pidfd_getfd``: a history of kernel bugs or effects
  beyond the sandbox, and nothing a sandboxed program needs.

- the 32-bit system call ABIs (i386 on x86_64, arm on aarch64): a second entry into the
  kernel with its own compat code and its own history of bugs, which 64-bit programs never
  use. A 32-bit program is killed at its first system call. Covering them would also double
  the filter, and runc compiles it at every create: ~2 ms more than the old deny list for the
  native arch alone, ~9 ms with the compat arches too (BENCHMARKS.md).

``ptrace`` stays, as in Docker: since Linux 4.8 a traced process cannot get round its filter,
and debuggers and ``strace`` are ordinary tools. ``personality`` is limited to the personas
Docker allows (no turning ASLR off for a neighbour to aim at). Calls this kernel or libseccomp
does not know are skipped by runc, and runc makes syscalls newer than libseccomp's table answer
ENOSYS, so programs probing for them fall back cleanly.

CRIU needs nothing more: it dumps with the filter suspended (``PTRACE_O_SUSPEND_SECCOMP``) and
installs the dumped filter last when it restores.
"""

from __future__ import annotations

import errno
import platform
from typing import Any

__all__ = ["profile"]

_ALLOWED = {
    "processes": [
        "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
        "kill", "tkill", "tgkill", "getpid", "getppid", "gettid", "getpgid",
        "setpgid", "getpgrp", "getsid", "setsid", "set_tid_address", "set_robust_list",
        "get_robust_list", "rseq", "restart_syscall", "prctl", "arch_prctl", "seccomp",
        "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
        "pidfd_open", "pidfd_send_signal", "ptrace", "process_vm_readv", "process_vm_writev",
        "process_mrelease", "getrusage", "times", "getpriority", "setpriority", "ioprio_get",
        "ioprio_set", "getrlimit", "setrlimit", "prlimit64", "uname", "sysinfo",
        "getcpu", "getrandom", "umask",
    ],
    "identity": [
        "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
        "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
        "setfsuid", "setfsgid", "capget", "capset",
    ],
    "scheduling": [
        "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getattr",
        "sched_setattr", "sched_getparam", "sched_setparam", "sched_getscheduler",
        "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
        "sched_rr_get_interval",
    ],
    "memory": [
        "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync",
        "mlock", "mlock2", "mlockall", "munlock", "munlockall", "remap_file_pages",
        "membarrier", "memfd_create", "memfd_secret", "pkey_alloc", "pkey_free",
        "pkey_mprotect", "map_shadow_stack", "mseal",
    ],
    "signals": [
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend",
        "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "signalfd",
        "signalfd4", "pause",
    ],
    "time": [
        "clock_gettime", "clock_getres", "clock_nanosleep", "gettimeofday", "time",
        "nanosleep", "alarm", "getitimer", "setitimer", "adjtimex", "clock_adjtime",
        "timer_create", "timer_delete", "timer_gettime", "timer_settime", "timer_getoverrun",
        "timerfd_create", "timerfd_gettime", "timerfd_settime",
    ],
    "files": [
        "open", "openat", "openat2", "creat", "close", "close_range", "read", "write",
        "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
        "lseek", "dup", "dup2", "dup3", "fcntl", "ioctl", "flock", "fsync", "fdatasync", "sync",
        "syncfs", "sync_file_range", "fallocate", "fadvise64", "readahead", "truncate",
        "ftruncate", "sendfile", "copy_file_range", "splice", "tee", "vmsplice", "pipe",
        "pipe2", "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs",
        "access", "faccessat", "faccessat2", "getcwd", "chdir", "fchdir", "chroot",
        "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2", "link", "linkat",
        "unlink", "unlinkat", "symlink", "symlinkat", "readlink", "readlinkat", "mknod",
        "mknodat", "getdents", "getdents64", "chmod", "fchmod", "fchmodat", "fchmodat2",
        "chown", "fchown", "lchown", "fchownat", "utime", "utimes", "utimensat", "futimesat",
        "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr",
        "listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr",
        "fremovexattr", "inotify_init", "inotify_init1", "inotify_add_watch",
        "inotify_rm_watch", "fanotify_mark", "cachestat",
    ],
    "waiting": [
        "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
        "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "futex",
        "futex_waitv", "futex_wake", "futex_wait", "futex_requeue",
    ],
    "aio": [
        "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    ],
    "sockets": [
        "socketpair", "bind", "listen", "accept", "accept4", "connect", "shutdown",
        "getsockname", "getpeername", "getsockopt", "setsockopt", "sendto", "sendmsg",
        "sendmmsg", "recvfrom", "recvmsg", "recvmmsg",
    ],
    "ipc": [
        "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
        "msgget", "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend",
        "mq_timedreceive", "mq_notify", "mq_getsetattr",
    ],
}
"""Each group names what a program does with it. Names of the 64-bit tables only; a name one
arch lacks (``open`` on aarch64, ``arch_prctl`` there) is skipped by runc."""

_ARCHES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}

_NAMESPACE_FLAGS = 0x7E020000 | 0x80
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, and NEWTIME (which only
``unshare`` and ``clone3`` take: in ``clone``'s flags 0x80 is part of the exit signal)."""
_CLONE_NAMESPACE_FLAGS = _NAMESPACE_FLAGS & ~0xFF

_PERSONAS = [0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]
"""PER_LINUX, PER_LINUX32, UNAME26 and both together, and the query that changes nothing."""

_AF_VSOCK = 40
"""Sockets to the hypervisor: a sandbox on a VM host has nothing to say to it."""


def profile() -> dict[str, Any]:
    """The ``linux.seccomp`` section of a sandbox's config.json, for this machine's arch."""
    arch = _ARCHES.get(platform.machine())
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "architectures": [arch] if arch else [],
        "syscalls": [
            {"names": sorted(name for group in _ALLOWED.values() for name in group), "action": "SCMP_ACT_ALLOW"},
            _when("clone", 0, "SCMP_CMP_MASKED_EQ", _CLONE_NAMESPACE_FLAGS, 0),
            _when("unshare", 0, "SCMP_CMP_MASKED_EQ", _NAMESPACE_FLAGS, 0),
            _when("socket", 0, "SCMP_CMP_NE", _AF_VSOCK),
            *(_when("personality", 0, "SCMP_CMP_EQ", persona) for persona in _PERSONAS),
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        ],
    }


def _when(name: str, index: int, op: str, value: int, value_two: int | None = None) -> dict[str, Any]:
    """Allow ``name`` when its argument ``index`` compares true (MASKED_EQ: ``arg & value ==
    value_two``)."""
    arg: dict[str, Any] = {"index": index, "value": value, "op": op}
    if value_two is not None:
        arg["valueTwo"] = value_two
    return {"names": [name], "action": "SCMP_ACT_ALLOW", "args": [arg]}
