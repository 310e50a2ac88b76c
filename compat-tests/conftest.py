"""Fixtures for Fjord's client compatibility tests: a real `fjord` process per scope.

`Broker` runs the binary the way kafka-server-start.sh runs Kafka (`fjord --override k=v ...`) on a
free 127.0.0.1 port and a temp dir, waits until a client's Metadata request succeeds, and can stop
it (SIGTERM), kill it (SIGKILL) and start it again on the same dir and port. Its stderr goes to
`broker.log` in the temp dir; a failing test gets the part of every running broker's log written
during that test attached to its report.

Scopes: `broker` is shared by every test of a pytest-xdist worker that does not restart it (auto
topic creation off, so a typo fails loudly); modules that need other broker settings make their
own module-scoped broker with `start_broker`; restart tests get a broker of their own.

Environment:
  FJORD_BIN              the broker binary (default <repo>/target/release/fjord)
  FJORD_READY_TIMEOUT_S  how long a start may take before the test fails (default 15)
  FJORD_COMPAT_KEEP      keep broker temp dirs after the session (default: removed when all passed)
  FJORD_COMPAT_STRICT    1: ignore known-failures.txt, report every failure as a failure
  FJORD_KAFKA_VERSION    which Kafka reference/kafka-as-fjord runs (default 4.4.0); a test marked
                         kafka_min_version("4.4", reason=...) is skipped against an older one

known-failures.txt lists tests that fail because the broker is not there yet: each runs, and is
reported as xfail with its reason; once it passes, strict xfail turns that into a failure, so the
line has to go. The list does not apply to the reference broker (reference/kafka-as-fjord).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FJORD_BIN = Path(os.environ.get("FJORD_BIN", REPO / "target" / "release" / "fjord"))
READY_TIMEOUT_S = float(os.environ.get("FJORD_READY_TIMEOUT_S", "15"))
#: A clean shutdown that takes longer than this is a failure (the broker is then SIGKILLed).
STOP_TIMEOUT_S = 30.0
#: How much of a broker log a failure report shows.
LOG_TAIL_LINES = 150

KNOWN_FAILURES_FILE = Path(__file__).resolve().parent / "known-failures.txt"

#: The broker under test is Apache Kafka behind fjord's command line (reference/kafka-as-fjord).
REFERENCE = FJORD_BIN.name == "kafka-as-fjord"
#: Which Apache Kafka the reference broker is (FJORD_KAFKA_VERSION, as kafka-as-fjord reads it;
#: 4.4.0 unless set), e.g. (4, 1, 1); None when the broker under test is Fjord.
KAFKA_VERSION = (tuple(int(p) for p in os.environ.get("FJORD_KAFKA_VERSION", "4.4.0").split("."))
                 if REFERENCE else None)


def kafka_older_than(version: str) -> bool:
    """True when the broker under test is an Apache Kafka older than `version` ("4.4")."""
    want = tuple(int(p) for p in version.split("."))
    return KAFKA_VERSION is not None and KAFKA_VERSION[:len(want)] < want

#: Broker settings for the consumer-group tests (test_groups*.py), all Kafka property names that
#: fjord accepts: no initial rebalance delay (the tests wait for the first assignment), classic
#: session timeouts down to 1 s allowed (the clients ask for 6 s), and KIP-848 members timed out
#: after 6 s and heartbeating every 0.5 s (so a kill -9 and a join show quickly).
GROUP_OVERRIDES = {
    "group.initial.rebalance.delay.ms": 0,
    "group.min.session.timeout.ms": 1000,
    "group.consumer.session.timeout.ms": 6000,
    "group.consumer.heartbeat.interval.ms": 500,
}
#: What Kafka also needs for GROUP_OVERRIDES: it refuses to start when the KIP-848 session timeout
#: or heartbeat interval is below its minimum (defaults 45 s and 5 s). Fjord refuses keys it does
#: not know, so these go to the reference broker only.
REFERENCE_ONLY_GROUP_OVERRIDES = {
    "group.consumer.min.session.timeout.ms": 1000,
    "group.consumer.min.heartbeat.interval.ms": 100,
}


def group_overrides(**extra) -> dict[str, object]:
    """GROUP_OVERRIDES (plus the reference-only keys when the broker is Kafka) and `extra`."""
    out = dict(GROUP_OVERRIDES)
    if REFERENCE:
        out.update(REFERENCE_ONLY_GROUP_OVERRIDES)
    out.update(extra)
    return out

#: util-linux's setpriv, to start brokers with a parent-death signal (see Broker.spawn).
_SETPRIV = shutil.which("setpriv")

_RUNNING: list["Broker"] = []
#: Every broker this worker made, for failure reports (a killed broker's log matters most).
_ALL: list["Broker"] = []


#: Ports handed out come from a block per xdist worker below the kernel's ephemeral range
#: (32768+), not from binding port 0: the kernel can hand the same ephemeral port to two
#: successive binds (a broker then got one port for both its listeners), and a client's
#: outgoing connection can take an ephemeral port between the probe and the broker's bind.
#: Two pytest sessions on one machine would walk the same blocks from the same place, so the
#: blocks are rotated by the session (xdist's run id, shared by its workers) and each process
#: starts at a place of its own in its block (its pid); a port still in use is skipped anyway.
_PORT_BASE, _PORT_BLOCK, _PORT_BLOCKS = 20000, 2000, 6
_port_cursor = (os.getpid() * 7919) % _PORT_BLOCK


def free_port() -> int:
    global _port_cursor
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    session = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
    index += int(hashlib.sha256(session.encode()).hexdigest(), 16)
    low = _PORT_BASE + (index % _PORT_BLOCKS) * _PORT_BLOCK
    for _ in range(_PORT_BLOCK):
        port = low + _port_cursor % _PORT_BLOCK
        _port_cursor += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise BrokerError(f"no free port in {low}..{low + _PORT_BLOCK}")


class BrokerError(AssertionError):
    pass


class Broker:
    """One fjord process with its own port and log dir; restartable on both."""

    def __init__(self, name: str, overrides: dict[str, object] | None = None, host: str = "127.0.0.1",
                 netns: str | None = None):
        self.name = name
        #: The address it listens on; with `netns`, its own in that network namespace
        #: (see netlab.py).
        self.host = host
        self.netns = netns
        self.dir = Path(tempfile.mkdtemp(prefix=f"fjord-compat-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:40]}-"))
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "broker.log"
        self.port = free_port()
        self.node_id = 1
        #: Fjord's HTTP listener (/metrics, /healthz, /readyz, the status page); Kafka ignores it.
        self.metrics_port = free_port()
        self.overrides = {
            "node.id": self.node_id,
            "listeners": f"PLAINTEXT://{host}:{self.port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{self.port}",
            "log.dirs": str(self.data_dir),
            "metrics.listener": f"http://{host}:{self.metrics_port}",
        }
        self.overrides.update(overrides or {})
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        #: A controller-only node (process.roles=controller): `port` is its controller
        #: listener, and it serves no Kafka client.
        self.controller_only = False
        #: Environment variables added to the process's (as a compose file's `environment:`).
        self.env: dict[str, str] = {}
        #: A properties file given before the overrides, as `kafka-server-start.sh` takes one.
        self.properties_file: Path | None = None
        _ALL.append(self)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Base URL of the HTTP listener (`metrics.listener`), e.g. http://127.0.0.1:1234."""
        listener = str(self.overrides.get("metrics.listener", ""))
        return listener.rstrip("/") if listener.startswith("http://") else ""

    @property
    def is_reference(self) -> bool:
        """True when the broker under test is Apache Kafka (reference/kafka-as-fjord)."""
        return FJORD_BIN.name == "kafka-as-fjord"

    def command(self) -> list[str]:
        cmd = ["ip", "netns", "exec", self.netns] if self.netns else []
        cmd += [str(FJORD_BIN)]
        if self.properties_file is not None:
            cmd.append(str(self.properties_file))
        for k, v in self.overrides.items():
            cmd += ["--override", f"{k}={v}"]
        return cmd

    def start(self) -> "Broker":
        self.spawn()
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def spawn(self) -> "Broker":
        """Starts the process without waiting for it (the nodes of a cluster are ready only
        once a majority of them runs)."""
        if not FJORD_BIN.exists():
            raise BrokerError(f"fjord binary not found at {FJORD_BIN}: build it with "
                              f"`cargo build --release -p fjord-broker` or set FJORD_BIN")
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        cmd = self.command()
        if _SETPRIV and threading.current_thread() is threading.main_thread():
            # SIGKILLed when this process dies, even without its atexit (an xdist worker that
            # crashed): a broker left behind keeps its port and, a JVM, its CPU. (The signal comes
            # when the thread that started it ends, hence the main thread only.)
            cmd = [_SETPRIV, "--pdeathsig", "KILL", "--", *cmd]
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== fjord-compat: start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, **self.env} if self.env else None)
        _RUNNING.append(self)
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S):
        """Ready means a Metadata request gets an answer that lists this broker; for a
        controller-only node, that its controller listener is open (and, on Fjord, that
        /readyz says it knows the quorum's leader)."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        if self.controller_only:
            self._wait_controller_ready(deadline, timeout_s)
            return
        # First the cheap check: is this process listening yet? (Not just anything: another
        # session's broker on the same port would answer Metadata as well.)
        while True:
            self._check_alive()
            if self._listening():
                break
            if time.monotonic() > deadline:
                raise BrokerError(f"{self.name}: port {self.port} not open after {timeout_s}s"
                                  f"{self._port_holder()}\n{self.log_tail()}")
            time.sleep(0.05)
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.connection.setup.timeout.ms": 2000})
        last = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                md = admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
                if self.node_id in md.brokers:
                    self._check_alive()
                    return
                last = f"metadata lists brokers {list(md.brokers)}"
            except Exception as e:  # noqa: BLE001 - any failure means not ready yet
                last = repr(e)
            time.sleep(0.1)
        raise BrokerError(f"{self.name}: no Metadata answer within {timeout_s}s (last: {last})\n{self.log_tail()}")

    def _wait_controller_ready(self, deadline: float, timeout_s: float):
        import urllib.request

        last = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if not self._listening():
                    raise OSError(f"port {self.port} not open{self._port_holder()}")
                if self.is_reference:
                    return
                with urllib.request.urlopen(f"{self.metrics_url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception as e:  # noqa: BLE001 - any failure means not ready yet
                last = repr(e)
            time.sleep(0.05)
        raise BrokerError(f"{self.name}: controller not ready within {timeout_s}s (last: {last})\n{self.log_tail()}")

    def _listening(self) -> bool:
        """The port takes connections and (where /proc tells) the socket listening on it is this
        broker's process's own: a port that another process took first would otherwise pass
        for ready while this broker dies of "address in use"."""
        try:
            socket.create_connection((self.host, self.port), timeout=0.5).close()
        except OSError:
            return False
        owned = self._owns_listener()
        return owned is None or owned

    def _owns_listener(self) -> bool | None:
        """Whether a LISTEN socket on `port` is among the process's open files (Linux /proc,
        in the process's own network namespace); None when that cannot be read."""
        pid = self.proc.pid if self.proc is not None else None
        if pid is None:
            return None
        try:
            inodes = set()
            for table in ("tcp", "tcp6"):
                with open(f"/proc/{pid}/net/{table}") as f:
                    for line in f.readlines()[1:]:
                        cols = line.split()
                        if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == self.port:
                            inodes.add(cols[9])
            fds = set()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    fds.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:  # closed meanwhile
                    pass
        except (OSError, ValueError, IndexError):
            return None if self.proc.poll() is None else False
        return any(f"socket:[{i}]" in fds for i in inodes)

    def _port_holder(self) -> str:
        """For an error message: whether the port takes connections from another process."""
        try:
            socket.create_connection((self.host, self.port), timeout=0.5).close()
        except OSError:
            return ""
        if self._owns_listener() is not False:
            return ""
        return f" by this broker (pid {self.proc.pid}), though it takes connections: another process listens on it"

    def _check_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise BrokerError(f"{self.name}: fjord exited with {self.proc.returncode} during start\n{self.log_tail()}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait: returns the exit status. A broker that does not exit in time is
        SIGKILLed and the call fails."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BrokerError(f"{self.name}: still running {timeout_s}s after SIGTERM\n{self.log_tail()}")
        self._forget()
        return rc

    def kill(self):
        """SIGKILL: a crash, as far as the broker can tell."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._forget()

    def pause(self):
        """SIGSTOP: a process that is alive but answers nothing (a long GC pause, a hung disk)."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        """SIGCONT after [`pause`]."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self, clean: bool = True) -> int | None:
        rc = self.stop() if clean else self.kill()
        self.start()
        return rc

    def _forget(self):
        if self in _RUNNING:
            _RUNNING.remove(self)

    def log_text(self, start: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, start: int = 0, lines: int = LOG_TAIL_LINES) -> str:
        text = self.log_text(start).splitlines()
        head = f"----- {self.name} log ({self.log_path}), last {min(lines, len(text))} of {len(text)} lines -----"
        return "\n".join([head, *text[-lines:]])

    def cleanup(self, keep: bool):
        self.kill()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def _kill_all():
    for b in list(_RUNNING):
        try:
            b.kill()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


atexit.register(_kill_all)

_failed = False


def _keep() -> bool:
    return bool(os.environ.get("FJORD_COMPAT_KEEP")) or _failed


#: The brokers that the body of the running test started through start_broker, start_cluster or
#: start_split_cluster (None between test bodies): they go at its teardown. Those a fixture starts
#: go with the test's module (the fixtures that use the factories are module-scoped; pytest tears
#: a module down when a worker moves on to another). At the end of the session, as before, a whole
#: run kept every module's broker and every test's cluster running: against the reference, three
#: JVMs a cluster, that filled this machine's 23 GB.
_test_owned: list[Broker] | None = None
_setting_up: pytest.Item | None = None


def _owned_by_the_running_test(brokers: list[Broker]):
    if _test_owned is not None:
        _test_owned.extend(brokers)
    elif _setting_up is not None:
        module = _setting_up.getparent(pytest.Module)
        if module is not None:
            module.addfinalizer(lambda: [b.cleanup(_keep()) for b in brokers])


@pytest.fixture(scope="session")
def start_broker():
    """Factory for brokers that live until the end of the session (or the caller stops them):
    one a test's body starts, until that test's teardown; one a fixture starts, until the module's."""
    made: list[Broker] = []

    def start(name: str, **overrides) -> Broker:
        b = Broker(name, overrides)
        made.append(b)
        _owned_by_the_running_test([b])
        return b.start()

    yield start
    for b in made:
        b.cleanup(_keep())


def _start_together(nodes: list[Broker]):
    """Starts the nodes of one cluster, all before waiting for any (each is ready only once a
    majority of the voters runs); kills them all if one does not come up."""
    for n in nodes:
        n.spawn()
    try:
        for n in nodes:
            n.wait_ready(timeout_s=READY_TIMEOUT_S * 4 if REFERENCE else READY_TIMEOUT_S)
    except BaseException:
        for n in nodes:
            n.kill()
        raise


@pytest.fixture(scope="session")
def start_cluster():
    """Factory for clusters of `n` nodes (each a broker and a controller voter, Kafka's KRaft
    settings) that live until the end of the session, or, started by a test's body, until that
    test's teardown; by a fixture, until the module's."""
    made: list[Broker] = []

    def start(name: str, n: int = 3, network=None, per_node: list[dict] | None = None, **overrides) -> list[Broker]:
        """`network` (a netlab.Network of `n` nodes) runs each node in a namespace of its own;
        `per_node[i]` adds settings of node i + 1 alone (`{port}`, `{controller_port}` in one:
        its client and controller ports)."""
        hosts = network.addresses if network is not None else ["127.0.0.1"] * n
        controller_ports = [free_port() for _ in range(n)]
        voters = ",".join(f"{i + 1}@{hosts[i]}:{p}" for i, p in enumerate(controller_ports))
        nodes = []
        for i in range(n):
            b = Broker(f"{name}-node{i + 1}", overrides, host=hosts[i],
                       netns=network.namespaces[i] if network is not None else None)
            b.node_id = i + 1
            b.overrides.update({
                "node.id": b.node_id,
                "listeners": f"PLAINTEXT://{b.host}:{b.port},CONTROLLER://{b.host}:{controller_ports[i]}",
                "controller.listener.names": "CONTROLLER",
                "controller.quorum.voters": voters,
                "process.roles": "broker,controller",
            })
            # `{port}` and `{controller_port}` in a per-node value: the node's client and
            # controller ports.
            fill = lambda v: (v.replace("{port}", str(b.port)).replace("{controller_port}", str(controller_ports[i]))
                              if isinstance(v, str) else v)
            b.overrides.update({k: fill(v) for k, v in (per_node or [{}] * n)[i].items()})
            made.append(b)
            nodes.append(b)
        _owned_by_the_running_test(nodes)
        _start_together(nodes)
        return nodes

    yield start
    for b in made:
        b.cleanup(_keep())


@pytest.fixture(scope="session")
def start_split_cluster():
    """Factory for clusters with dedicated roles: `controllers` controller-only nodes (ids 1..,
    process.roles=controller, the voters) and `brokers` broker-only nodes (the ids after them,
    process.roles=broker, which find the quorum through controller.quorum.voters). Returns
    (controllers, brokers); they live until the end of the session, or, started by a test's
    body, until that test's teardown; by a fixture, until the module's."""
    made: list[Broker] = []

    def start(name: str, controllers: int = 3, brokers: int = 3, **overrides) -> tuple[list[Broker], list[Broker]]:
        ctrl = []
        for i in range(controllers):
            c = Broker(f"{name}-controller{i + 1}", host="127.0.0.1")
            c.node_id = i + 1
            c.controller_only = True
            ctrl.append(c)
        voters = ",".join(f"{c.node_id}@{c.host}:{c.port}" for c in ctrl)
        for c in ctrl:
            c.overrides.pop("advertised.listeners")
            c.overrides.update({
                "node.id": c.node_id,
                "listeners": f"CONTROLLER://{c.host}:{c.port}",
                "controller.listener.names": "CONTROLLER",
                "controller.quorum.voters": voters,
                "process.roles": "controller",
            })
            c.overrides.update(overrides)
        brk = []
        for i in range(brokers):
            b = Broker(f"{name}-broker{controllers + i + 1}", overrides, host="127.0.0.1")
            b.node_id = controllers + i + 1
            b.overrides.update({
                "node.id": b.node_id,
                "controller.listener.names": "CONTROLLER",
                "controller.quorum.voters": voters,
                "process.roles": "broker",
            })
            brk.append(b)
        made.extend(ctrl + brk)
        _owned_by_the_running_test(ctrl + brk)
        _start_together(ctrl + brk)
        return ctrl, brk

    yield start
    for b in made:
        b.cleanup(_keep())


@pytest.fixture(scope="session")
def broker() -> Broker:
    """The shared broker: auto-create off, Kafka defaults otherwise. (Not through start_broker,
    which would give it to the module of the test that first asks for it.)"""
    b = Broker("shared", {"auto.create.topics.enable": "false", "num.partitions": 1})
    yield b.start()
    b.cleanup(_keep())


@pytest.fixture
def own_broker(request):
    """A broker for this test alone, for tests that stop, kill or restart it."""
    made: list[Broker] = []

    def start(**overrides) -> Broker:
        b = Broker(request.node.name, overrides)
        made.append(b)
        return b.start()

    yield start
    for b in made:
        b.cleanup(_keep())


@pytest.fixture
def topic_name(request) -> str:
    """A topic name no other test (or xdist worker) uses."""
    base = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:120]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def new_topic(topic_name):
    """new_topic(broker, partitions=3, configs=None) creates a topic (confluent-kafka AdminClient),
    waits until Metadata shows all its partitions, and returns its name. The first call in a test
    returns `topic_name`, later ones `topic_name-N` (or `topic_name-SUFFIX`)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    made = [0]

    def create(b: Broker, partitions: int = 3, configs: dict | None = None, suffix: str | None = None) -> str:
        n = made[0]
        made[0] += 1
        name = topic_name if n == 0 and suffix is None else f"{topic_name}-{suffix or n}"
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        nt = NewTopic(name, partitions, 1, config={k: str(v) for k, v in (configs or {}).items()})
        admin.create_topics([nt], operation_timeout=20, request_timeout=20)[name].result(timeout=30)
        wait_for(lambda: _partition_count(admin, name) == partitions, f"topic {name} with {partitions} partitions in Metadata")
        return name

    return create


def _partition_count(admin, name) -> int:
    md = admin.list_topics(name, timeout=5)
    t = md.topics.get(name)
    if t is None or t.error is not None:
        return -1
    return len(t.partitions)


def wait_for(cond, what: str, timeout_s: float = 20.0, interval_s: float = 0.1):
    """Polls `cond` until it is truthy; fails with `what` after `timeout_s`. Returns its value."""
    deadline = time.monotonic() + timeout_s
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - the condition may fail while the broker catches up
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval_s)


def _known_failures() -> dict[str, str]:
    """test node id (relative to compat-tests/) -> why it fails today."""
    if os.environ.get("FJORD_COMPAT_STRICT") == "1" or REFERENCE:
        return {}
    out = {}
    for line in KNOWN_FAILURES_FILE.read_text().splitlines() if KNOWN_FAILURES_FILE.exists() else []:
        line = line.strip()
        if line and not line.startswith("#"):
            test, _, why = line.partition(" ")
            out[test] = why.strip() or "known failure"
    return out


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "kafka_min_version(version, reason): what Apache Kafka does only from `version` (\"4.4\") on; "
        "skipped, with the reason, against an older reference Kafka (FJORD_KAFKA_VERSION); runs on Fjord")


def pytest_collection_modifyitems(config, items):
    known = _known_failures()
    here = Path(__file__).resolve().parent
    for item in items:
        for mark in item.iter_markers("kafka_min_version"):
            version = mark.args[0]
            if kafka_older_than(version):
                item.add_marker(pytest.mark.skip(
                    reason=f"Kafka {'.'.join(map(str, KAFKA_VERSION))} < {version}: {mark.kwargs.get('reason', '')}"))
        rel = Path(item.path).resolve().relative_to(here).as_posix()
        nodeid = f"{rel}::{item.name}"
        why = known.get(nodeid) or known.get(f"{rel}::{item.originalname}")
        if why:
            item.add_marker(pytest.mark.xfail(reason=why, strict=True))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    global _setting_up
    item._fjord_log_marks = {id(b): b.log_size() for b in _ALL}
    _setting_up = item
    try:
        yield
    finally:
        _setting_up = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    global _test_owned
    _test_owned = []
    try:
        yield
    finally:
        item._fjord_owned, _test_owned = _test_owned, None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    for b in getattr(item, "_fjord_owned", ()):
        b.cleanup(_keep())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    global _failed
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        _failed = True
        marks = getattr(item, "_fjord_log_marks", {})
        for b in _ALL:
            mark = marks.get(id(b), 0)
            if b in _RUNNING or b.log_size() > mark:
                report.sections.append((f"fjord broker log: {b.name}", b.log_tail(mark)))




def pytest_terminal_summary(terminalreporter):
    """The measured rebalance times (tests record them as user properties "rebalance_ms:<what>"),
    gathered from every xdist worker's reports."""
    rows = []
    for reports in terminalreporter.stats.values():
        for r in reports:
            if getattr(r, "when", None) != "call":
                continue
            for k, v in getattr(r, "user_properties", ()):
                if str(k).startswith("rebalance_ms:"):
                    rows.append((str(k).split(":", 1)[1], v, r.nodeid))
    if rows:
        terminalreporter.section("consumer group rebalance times")
        for what, ms, nodeid in sorted(rows):
            terminalreporter.write_line(f"{ms:8.0f} ms  {what}  ({nodeid.split('::')[-1]})")
