"""The runc driver's state files: its own record of each sandbox, and runc's of a container.

``sandboxes/ID/state.json`` holds a `Sandbox` (mode 0600: it holds init's token); a snapshot's
``runtime.json`` an `Origin`. runc's state of a container is kept across a checkpoint in
``sandboxes/ID/container.json`` (`CONTAINER`) and written back into runc's root for a sandbox
CRIU restored without runc (`adopt_container`). Every file is written whole or not at all
(`write_json`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandlot.runtime import images, initproto, models, network

__all__ = ["CONTAINER", "Origin", "Sandbox", "adopt_container", "read_container", "write_json"]

CONTAINER = "container.json"
"""runc's state of a checkpointed sandbox's container, kept in its directory (`Core._release`)."""


@dataclasses.dataclass
class Sandbox:
    """What the driver keeps about one sandbox; state.json holds the same."""

    spec: models.SandboxSpec
    limits: models.Limits
    link: network.Link | None
    lower: str
    created_at: datetime
    token: str
    init_pid: int = 0
    paused: bool = False
    """Frozen by the cgroup freezer: its processes are in memory, stopped."""
    checkpoint: str | None = None
    """Checkpointed to this image directory: no process, no mount, only files."""
    client: initproto.InitClient | None = None

    async def close_client(self) -> None:
        """Close the host's connection to init, if one is open (a checkpoint cannot keep it)."""
        if self.client is not None:
            client, self.client = self.client, None
            await client.aclose()

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": {
                "sandbox_id": self.spec.sandbox_id,
                "template": self.spec.template,
                "limits": dataclasses.asdict(self.spec.limits),
                "network": dataclasses.asdict(self.spec.network),
                "env": dict(self.spec.env),
                "metadata": dict(self.spec.metadata),
                "hostname": self.spec.hostname,
                "runner": self.spec.runner,
            },
            "limits": dataclasses.asdict(self.limits),
            "link": dataclasses.asdict(self.link) if self.link else None,
            "lower": self.lower,
            "created_at": self.created_at.isoformat(),
            "token": self.token,
            "init_pid": self.init_pid,
            "paused": self.paused,
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sandbox:
        s = data["spec"]
        spec = models.SandboxSpec(
            sandbox_id=s["sandbox_id"],
            template=s["template"],
            limits=models.Limits(**s["limits"]),
            network=models.NetworkPolicy(**s["network"]),
            env=s["env"],
            metadata=s["metadata"],
            hostname=s["hostname"],
            runner=s.get("runner", False),
        )
        return cls(
            spec=spec,
            limits=models.Limits(**data["limits"]),
            link=network.Link(**data["link"]) if data["link"] else None,
            lower=data["lower"],
            created_at=datetime.fromisoformat(data["created_at"]),
            token=data["token"],
            init_pid=data["init_pid"],
            paused=data["paused"],
            checkpoint=data.get("checkpoint"),
        )


@dataclasses.dataclass(frozen=True)
class Origin:
    """What a copy of a sandbox (a fork, a sandbox made from a snapshot) inherits from it."""

    template: str
    lower: str
    """The template build it ran on: files and memory images refer to exactly that one."""
    limits: models.Limits
    hostname: str
    token: str
    """init's token, which a copy restored from memory keeps (it lives in that memory)."""

    @classmethod
    def of(cls, sbx: Sandbox) -> Origin:
        return cls(
            template=sbx.spec.template,
            lower=sbx.lower,
            limits=sbx.limits,
            hostname=sbx.spec.hostname or sbx.spec.sandbox_id,
            token=sbx.token,
        )

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "limits": dataclasses.asdict(self.limits)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Origin:
        return cls(
            template=data["template"],
            lower=data["lower"],
            limits=models.Limits(**data["limits"]),
            hostname=data["hostname"],
            token=data["token"],
        )


def write_json(path: Path, data: Any, *, durable: bool = False) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one; with
    ``durable``, the new one survives a power cut too (fsynced, and its directory)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", opener=lambda p, f: os.open(p, f, 0o600)) as f:
        json.dump(data, f)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        images.fsync_dir(path.parent)


def read_container(sdir: Path) -> dict[str, Any] | None:
    """runc's state of the sandbox's container as `_release` kept it, if it did."""
    try:
        container = json.loads((sdir / CONTAINER).read_text())
    except (OSError, ValueError):
        return None
    return container if isinstance(container, dict) and "config" in container else None


def adopt_container(root: Path, sid: str, container: dict[str, Any], pid: int, *, outputs: str) -> None:
    """Write runc's state (under its ``root``) of container ``sid``, as saved at its checkpoint,
    for the init ``pid`` that CRIU restored, whose stdout and stderr are ``outputs``."""
    with open(f"/proc/{pid}/stat") as f:
        started = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
    state = {
        **container,
        "init_process_pid": pid,
        "init_process_start": started,
        "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "namespace_paths": {k: re.sub(r"^/proc/\d+/", f"/proc/{pid}/", v)
                            for k, v in container.get("namespace_paths", {}).items()},
        "external_descriptors": ["/dev/null", outputs, outputs],
    }
    (root / sid).mkdir(mode=0o711, exist_ok=True)
    write_json(root / sid / "state.json", state)
