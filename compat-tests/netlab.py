"""Network namespaces for cutting links between the nodes of a cluster on one host.

Each node runs in a network namespace of its own, joined to a bridge in the host's namespace by
a veth pair, with an address of its own on the bridge's /24. Clients (the tests) stay in the
host's namespace and reach every node through the bridge. A link between two nodes is cut by
routing, in each of the two namespaces, the other's address through a gateway nobody answers
for: packets to it go nowhere (a new connection fails after the ARP timeout, an open one stalls,
as over a dead switch), while both nodes still answer clients. That is what a partial network
partition looks like to Kafka: a leader cut off from its followers and the controller, still
reachable by its producers. Healing removes the routes. (A blackhole route would fail a
connect at once instead, which no real network does.)

Namespaces rather than iptables: this machine has no iptables, and routes inside a namespace
touch nothing outside it. Needs root (CAP_NET_ADMIN) and the `ip` tool.
"""

import itertools
import os
import shutil
import subprocess

_COUNTER = itertools.count()


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Network:
    """A bridge and one namespace per node; `cut`/`heal` the link between two nodes."""

    def __init__(self, nodes: int):
        # Interface names are at most 15 bytes; the pid and a counter keep concurrent test
        # processes apart.
        k = next(_COUNTER)
        tag = f"{os.getpid() % 100000}{k % 10}"
        self.bridge = f"fjb{tag}"
        subnet = (os.getpid() + 7 * k) % 250 + 1
        self.prefix = f"10.213.{subnet}"
        self.namespaces = [f"fjord-{tag}-n{i + 1}" for i in range(nodes)]
        self.addresses = [f"{self.prefix}.{i + 11}" for i in range(nodes)]
        self._veths = [f"fjv{tag}{i + 1}" for i in range(nodes)]
        # On the subnet, held by nobody: the gateway of a cut link.
        self._nowhere = f"{self.prefix}.250"
        self._cut: set[tuple[int, int]] = set()
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.prefix}.1/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for ns, veth, addr in zip(self.namespaces, self._veths, self.addresses):
                _ip("netns", "add", ns)
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", veth, "master", self.bridge)
                _ip("link", "set", veth, "up")
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.teardown()
            raise

    def cut(self, a: int, b: int):
        """Cuts the link between nodes `a` and `b` (node ids from 1), both ways."""
        key = (min(a, b), max(a, b))
        if key in self._cut:
            return
        _ip("-n", self.namespaces[a - 1], "route", "add", f"{self.addresses[b - 1]}/32", "via", self._nowhere)
        _ip("-n", self.namespaces[b - 1], "route", "add", f"{self.addresses[a - 1]}/32", "via", self._nowhere)
        self._cut.add(key)

    def heal(self, a: int, b: int):
        key = (min(a, b), max(a, b))
        if key not in self._cut:
            return
        _ip("-n", self.namespaces[a - 1], "route", "del", f"{self.addresses[b - 1]}/32")
        _ip("-n", self.namespaces[b - 1], "route", "del", f"{self.addresses[a - 1]}/32")
        self._cut.discard(key)

    def heal_all(self):
        for a, b in list(self._cut):
            self.heal(a, b)

    def teardown(self):
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for veth in self._veths:
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
