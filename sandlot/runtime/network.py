"""Sandbox networking: a veth from the host into each sandbox's network namespace, and
nftables rules.

Each sandbox gets a slot number; slot N owns the /30 at ``subnet + 4N`` (host end ``.1``,
sandbox end ``.2``), the host-side veth ``<prefix><N>`` and the nftables chain ``sb<N>``.
Routing is point to point through the host, never a shared bridge, so every packet a sandbox
sends passes the host's netfilter hooks:

- ``input``: a sandbox can never open a connection to the host itself, whatever address of the
  host it aims at (replies to connections the host opened, such as the daemon's to the
  sandbox's init, are let back in);
- ``forward``: a per-sandbox chain, reached through a verdict map keyed by the veth name,
  applies the `NetworkPolicy`; other sandboxes, loopback, link-local (cloud metadata) and
  multicast are refused before any allow list is read, and so is a new connection beyond the
  sandbox's ``conntrack_limit`` (``ct count``: the rule counts the connections of its own
  chain, so each sandbox has its own share of the host's conntrack table);
- ``postrouting``: masquerade to the outside.

runc makes the namespace itself, inside the sandbox's user namespace: CRIU refuses to dump a
sandbox whose network namespace belongs to the host's user namespace ("One or more namespaces
doesn't belong to the target user namespace"), and a real sysfs can only be mounted in a
network namespace the sandbox's user namespace owns. The veth is wired by a runc
``createRuntime`` hook, ``sandlot-init net-hook`` (rtnetlink in C, ~1 ms), which runc runs
again on restore, when the namespace is new. The rules here are keyed by the veth's name, so
they are in place before the veth exists and stay across a checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
from collections.abc import Iterable

from sandlot.runtime import _utils, errors, models

__all__ = ["Link", "Network", "nameservers"]

# Refused for every sandbox, before its allow list: "this" network, loopback, link-local
# (where cloud metadata services live), multicast and the reserved class E.
_NEVER = ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3")
# Refused when the internet is on, unless allowed: the networks a host's LAN is likely on.
_PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")


@dataclasses.dataclass(frozen=True)
class Link:
    """The addresses and names of one slot."""

    slot: int
    veth: str
    host_address: str
    address: str

    def hook_args(self, *, ping_groups: tuple[int, int]) -> list[str]:
        """Arguments of ``sandlot-init net-hook`` that wire this link into a sandbox, and let
        the host gids ``ping_groups`` (the sandbox's own, first and last) open ICMP datagram
        sockets there: ping without CAP_NET_RAW."""
        first, last = ping_groups
        return ["net-hook", "--veth", self.veth, "--host-address", f"{self.host_address}/30",
                "--address", f"{self.address}/30", "--ping-groups", f"{first:d}-{last:d}"]


class Network:
    """The host side of every sandbox network of one driver instance.

    Slots are handed out round robin, so that a slot just released (whose veth the kernel
    may still be tearing down with its namespace) is not reused at once.
    """

    def __init__(self, *, instance: str, subnet: str, conntrack_limit: int = 4096) -> None:
        self.instance = instance
        self.conntrack_limit = conntrack_limit
        self.subnet = ipaddress.IPv4Network(subnet)
        if self.subnet.prefixlen > 29:
            raise ValueError(f"subnet {subnet} is too small: it needs room for /30 slots")
        digest = hashlib.sha256(instance.encode()).hexdigest()
        self.table = f"sandlot_{digest[:8]}"
        self.veth_prefix = f"sl{digest[:4]}"
        self._used: set[int] = set()
        self._next = 0

    @property
    def slots(self) -> int:
        return self.subnet.num_addresses // 4

    def link(self, slot: int) -> Link:
        base = self.subnet.network_address + 4 * slot
        return Link(slot=slot, veth=f"{self.veth_prefix}{slot}", host_address=str(base + 1), address=str(base + 2))

    def adopt(self, slot: int) -> None:
        """Mark ``slot`` as held by an existing sandbox (found in the state after a restart)."""
        self._used.add(slot)

    async def open(self) -> None:
        """Create (or refresh) this instance's nftables table and base chains."""
        t = f"inet {self.table}"
        p = f'"{self.veth_prefix}*"'
        await _nft(
            f"add table {t}",
            f"add chain {t} input {{ type filter hook input priority -10; policy accept; }}",
            f"add chain {t} forward {{ type filter hook forward priority -10; policy accept; }}",
            f"add chain {t} postrouting {{ type nat hook postrouting priority 100; policy accept; }}",
            f"add map {t} sandboxes {{ type ifname : verdict; }}",
            f"flush chain {t} input",
            f"add rule {t} input iifname {p} ct state established,related accept",
            f"add rule {t} input iifname {p} drop",
            f"flush chain {t} forward",
            f"add rule {t} forward iifname vmap @sandboxes",
            f"add rule {t} forward iifname {p} drop",
            f"add rule {t} forward oifname {p} ct state established,related accept",
            f"add rule {t} forward oifname {p} drop",
            f"flush chain {t} postrouting",
            f"add rule {t} postrouting ip saddr {self.subnet} oifname != {p} masquerade",
        )
        _enable_forwarding()

    async def close(self) -> None:
        """Remove the table; only when no sandbox of this instance is left."""
        await _nft(f"add table inet {self.table}", f"delete table inet {self.table}")

    async def apply(self, link: Link, policy: models.NetworkPolicy) -> None:
        """Put ``policy``'s rules in force for ``link``. Until then the base chains drop
        everything the sandbox sends, so this may run while the sandbox starts."""
        await _nft(*self._rules(link, policy))

    async def release(self, link: Link) -> None:
        """Remove whatever of ``link`` exists; safe to call on a half-made or gone link.

        The veth goes by itself with the sandbox's namespace, but only some time after the
        sandbox died; deleting it now makes destroy mean gone.
        """
        await self._remove_rules(link.slot, link.veth)
        await self.remove_device(link)
        self._used.discard(link.slot)

    async def remove_device(self, link: Link) -> None:
        """Delete ``link``'s veth now rather than when the kernel gets round to it, so that
        the hook of a restore can make it again; slot and rules stay."""
        if os.path.exists(f"/sys/class/net/{link.veth}"):
            await _utils.run("ip", "link", "delete", link.veth, check=False)

    def allocate(self) -> Link:
        """A free slot; `release` gives it back."""
        for _ in range(self.slots):
            slot, self._next = self._next, (self._next + 1) % self.slots
            link = self.link(slot)
            if slot not in self._used and not os.path.exists(f"/sys/class/net/{link.veth}"):
                self._used.add(slot)
                return link
        raise errors.RuntimeDriverError(f"no free network slot: {self.subnet} holds {self.slots}")

    def _rules(self, link: Link, policy: models.NetworkPolicy) -> list[str]:
        t = f"inet {self.table}"
        chain = f"{t} sb{link.slot}"
        rules = [
            f"add chain {chain}",
            f"flush chain {chain}",
            f"add rule {chain} ct state established,related accept",
            f"add rule {chain} meta nfproto ipv6 drop",
            f"add rule {chain} ip saddr != {link.address} drop",
            f"add rule {chain} ip daddr {_set((*_NEVER, str(self.subnet)))} drop",
            f"add rule {chain} ct state new ct count over {self.conntrack_limit} drop",
        ]
        if allow := _ipv4(policy.allow):
            rules.append(f"add rule {chain} ip daddr {_set(allow)} accept")
        if deny := _ipv4(policy.deny):
            rules.append(f"add rule {chain} ip daddr {_set(deny)} drop")
        if policy.internet:
            # The host's resolvers often sit on a private range: DNS to them stays open.
            if servers := _ipv4(nameservers()):
                for proto in ("udp", "tcp"):
                    rules.append(f"add rule {chain} ip daddr {_set(servers)} {proto} dport 53 accept")
            rules.append(f"add rule {chain} ip daddr {_set(_PRIVATE)} drop")
            rules.append(f"add rule {chain} accept")
        else:
            rules.append(f"add rule {chain} drop")
        rules.append(f'add element {t} sandboxes {{ "{link.veth}" : jump sb{link.slot} }}')
        return rules

    async def _remove_rules(self, slot: int, veth: str) -> None:
        # `add` first makes each `delete` valid whether or not the object existed: nftables
        # 1.0.6 (bookworm) has no `destroy`, and a failed command fails the whole batch.
        t = f"inet {self.table}"
        await _nft(
            f"add chain {t} sb{slot}",
            f'add element {t} sandboxes {{ "{veth}" : jump sb{slot} }}',
            f'delete element {t} sandboxes {{ "{veth}" }}',
            f"flush chain {t} sb{slot}",
            f"delete chain {t} sb{slot}",
        )

    async def remove_strays(self) -> list[int]:
        """Remove the veths and chains of every slot nobody holds (after a crash)."""
        found = {int(n[len(self.veth_prefix):]) for n in _listdir("/sys/class/net")
                 if n.startswith(self.veth_prefix) and n[len(self.veth_prefix):].isdigit()}
        out = await _utils.run("nft", "-j", "list", "table", "inet", self.table, check=False)
        for item in json.loads(out).get("nftables", []) if out else []:
            name = item.get("chain", {}).get("name", "")
            if name.startswith("sb") and name[2:].isdigit():
                found.add(int(name[2:]))
        strays = sorted(found - self._used)
        for slot in strays:
            await self.release(self.link(slot))
        return strays


def nameservers() -> list[str]:
    """The host's DNS servers that a sandbox can reach: not those on the host's loopback."""
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1])
            except ValueError:
                continue
            if not address.is_loopback:
                found.append(str(address))
    return found


def _ipv4(networks: Iterable[str]) -> tuple[str, ...]:
    # Sandboxes have no IPv6 route at all, so IPv6 entries of a policy have nothing to open.
    return tuple(n for n in networks if ipaddress.ip_network(n).version == 4)


def _set(networks: Iterable[str]) -> str:
    # Overlapping intervals are an error in an nftables set: merge them first.
    merged = ipaddress.collapse_addresses(ipaddress.IPv4Network(n) for n in networks)
    return "{ " + ", ".join(str(n) for n in merged) + " }"


def _lines(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


async def _nft(*commands: str) -> None:
    await _utils.run("nft", "-f", "-", input=_lines(*commands))


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _enable_forwarding() -> None:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        if f.read().strip() == "1":
            return
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1")
