"""Sandbox networking: a network namespace per sandbox, a veth to the host, nftables rules.

Each sandbox gets a slot number; slot N owns the /30 at ``subnet + 4N`` (host end ``.1``,
sandbox end ``.2``), the host-side veth ``<prefix><N>`` and the nftables chain ``sb<N>``.
Routing is point to point through the host, never a shared bridge, so every packet a sandbox
sends passes the host's netfilter hooks:

- ``input``: a sandbox can never open a connection to the host itself, whatever address of the
  host it aims at (replies to connections the host opened, such as the daemon's to the
  sandbox's init, are let back in);
- ``forward``: a per-sandbox chain, reached through a verdict map keyed by the veth name,
  applies the `NetworkPolicy`; other sandboxes, loopback, link-local (cloud metadata) and
  multicast are refused before any allow list is read;
- ``postrouting``: masquerade to the outside.

The namespace is made before the container and joined by path, which keeps it outside what
CRIU has to dump and restore (the veth stays in place while a sandbox is paused).
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

NETNS_DIR = "/var/run/netns"

# Refused for every sandbox, before its allow list: "this" network, loopback, link-local
# (where cloud metadata services live), multicast and the reserved class E.
_NEVER = ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3")
# Refused when the internet is on, unless allowed: the networks a host's LAN is likely on.
_PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")


@dataclasses.dataclass(frozen=True)
class Link:
    """The addresses and names of one slot."""

    slot: int
    netns: str
    veth: str
    host_address: str
    address: str

    @property
    def netns_path(self) -> str:
        return f"{NETNS_DIR}/{self.netns}"


class Network:
    """The host side of every sandbox network of one driver instance."""

    def __init__(self, *, instance: str, subnet: str) -> None:
        self.instance = instance
        self.subnet = ipaddress.IPv4Network(subnet)
        if self.subnet.prefixlen > 29:
            raise ValueError(f"subnet {subnet} is too small: it needs room for /30 slots")
        digest = hashlib.sha256(instance.encode()).hexdigest()
        self.table = f"sandlot_{digest[:8]}"
        self.veth_prefix = f"sl{digest[:4]}"
        self.netns_prefix = f"sandlot-{digest[:8]}-"

    @property
    def slots(self) -> int:
        return self.subnet.num_addresses // 4

    def link(self, slot: int, sandbox_id: str) -> Link:
        if not 0 <= slot < self.slots:
            raise errors.RuntimeDriverError(f"no free network slot: {self.subnet} holds {self.slots}")
        base = self.subnet.network_address + 4 * slot
        return Link(
            slot=slot,
            netns=f"{self.netns_prefix}{sandbox_id}",
            veth=f"{self.veth_prefix}{slot}",
            host_address=str(base + 1),
            address=str(base + 2),
        )

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

    async def setup(self, link: Link, policy: models.NetworkPolicy) -> None:
        """Make the namespace, the veth pair and the sandbox's rules; undo all on failure."""
        try:
            await _utils.run("ip", "netns", "add", link.netns)
            await _utils.run("ip", "-batch", "-", input=_lines(
                f"link add {link.veth} type veth peer name eth0 netns {link.netns}",
                f"link set {link.veth} addrgenmode none",
                f"addr add {link.host_address}/30 dev {link.veth}",
                f"link set {link.veth} up",
            ))  # fmt: skip
            await _utils.run("ip", "-n", link.netns, "-batch", "-", input=_lines(
                "link set lo up",
                "link set eth0 addrgenmode none",
                f"addr add {link.address}/30 dev eth0",
                "link set eth0 up",
                f"route add default via {link.host_address}",
            ))  # fmt: skip
            await _nft(*self._rules(link, policy))
        except BaseException:
            await self.teardown(link)
            raise

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

    async def teardown(self, link: Link) -> None:
        """Remove whatever of ``link`` exists; safe to call on a half-made or gone link."""
        await self._remove_rules(link.slot, link.veth)
        # The veth first: a namespace's devices go away some time after `ip netns delete`,
        # and the slot (and its veth name) may be handed out again at once.
        if os.path.exists(f"/sys/class/net/{link.veth}"):
            await _utils.run("ip", "link", "delete", link.veth, check=False)
        if os.path.exists(link.netns_path):
            await _utils.run("ip", "netns", "delete", link.netns)

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

    async def leftovers(self) -> tuple[list[str], list[str], list[int]]:
        """Namespaces, veths and rule chains of this instance that exist on the host."""
        netns = sorted(n for n in _listdir(NETNS_DIR) if n.startswith(self.netns_prefix))
        veths = sorted(n for n in _listdir("/sys/class/net") if n.startswith(self.veth_prefix))
        chains = []
        out = await _utils.run("nft", "-j", "list", "table", "inet", self.table, check=False)
        if out:
            for item in json.loads(out).get("nftables", []):
                name = item.get("chain", {}).get("name", "")
                if name.startswith("sb") and name[2:].isdigit():
                    chains.append(int(name[2:]))
        return netns, veths, sorted(chains)

    async def remove_leftover(self, *, netns: str | None = None, veth: str | None = None,
                              slot: int | None = None) -> None:  # fmt: skip
        if slot is not None:
            await self._remove_rules(slot, veth or f"{self.veth_prefix}{slot}")
        if netns is not None and os.path.exists(f"{NETNS_DIR}/{netns}"):
            await _utils.run("ip", "netns", "delete", netns)
        if veth is not None and os.path.exists(f"/sys/class/net/{veth}"):
            await _utils.run("ip", "link", "delete", veth, check=False)


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
