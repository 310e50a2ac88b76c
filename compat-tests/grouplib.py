"""Consumer-group members as processes, and what the group tests assert about them.

`start_member(client, ...)` runs one member of a group in its own process, so that it can be
closed cleanly (it leaves the group) or killed with SIGKILL (the broker notices only when its
session times out):

    confluent, kafka-python, aiokafka   groupworker.py (this directory)
    java                                the Java CLI's `group-consume` (classic or KIP-848 protocol)
    kcat                                `kcat -G` (librdkafka 2.0.2, eager range assignor, auto commit)

Every member reports the same events (groupworker.py's docstring lists them); a `Member` collects
them with the time each line arrived, so a test can follow each member's assignment and the
records it read. kcat prints its rebalances on stderr and its records on stdout (-J); the Member
turns both into the same events.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from clientlib import JAVA_CLASSPATH, KCAT, Rec, assert_ok, produce
from conftest import wait_for

HERE = Path(__file__).resolve().parent
WORKER = HERE / "groupworker.py"

#: Client-side session timeout and heartbeat interval for classic members. The broker's
#: group.min.session.timeout.ms is lowered (GROUP_OVERRIDES) so shorter ones would be allowed;
#: 6 s keeps a busy 2-core machine from expiring live members.
SESSION_MS = 6000
HEARTBEAT_MS = 500


@dataclass
class Event:
    t: float  # time.monotonic() when the line arrived
    ev: str
    data: dict = field(default_factory=dict)


class Member:
    """One group member process and everything it printed."""

    def __init__(self, name: str, client: str, cmd: list[str]):
        self.name = name
        self.client = client
        self.cmd = cmd
        self.events: list[Event] = []
        self.stderr: list[str] = []
        self.lock = threading.Lock()
        self.now: set[int] = set()
        self.state = "running"  # running, closed, killed
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, encoding="utf-8", errors="surrogateescape")
        self.threads = [threading.Thread(target=self._read_stdout, daemon=True),
                        threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self.threads:
            t.start()

    # --------------------------------------------------------------- reading

    def _add(self, ev: str, **data):
        with self.lock:
            if ev in ("assigned", "revoked", "lost"):
                self.now = set(data["now"])
            self.events.append(Event(time.monotonic(), ev, data))

    def _read_stdout(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                d = json.loads(line)
            except ValueError:
                self._add("error", error=f"not JSON: {line[:200]}")
                continue
            if self.client == "kcat":
                self._add("rec", p=d["partition"], o=d["offset"], v=d["payload"])
            else:
                self._add(d.pop("ev"), **d)

    _KCAT_REBALANCE = re.compile(r"^% Group \S+ rebalanced \(memberid [^)]*\): (assigned|revoked): ?(.*)$")

    def _read_stderr(self):
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            with self.lock:
                self.stderr.append(line)
            if self.client != "kcat":
                continue
            m = self._KCAT_REBALANCE.match(line)
            if not m:
                continue
            parts = sorted(int(p) for p in re.findall(r"\[(\d+)\]", m.group(2)))
            # kcat -G runs librdkafka's eager protocol: each callback carries the whole set.
            if m.group(1) == "assigned":
                self._add("assigned", added=parts, now=parts)
            else:
                self._add("revoked", removed=parts, now=[])

    # --------------------------------------------------------------- views

    def snapshot(self) -> list[Event]:
        with self.lock:
            return list(self.events)

    def mark(self) -> int:
        """An index into the events: `since(mark)` is what happened after this call."""
        with self.lock:
            return len(self.events)

    def since(self, mark: int) -> list[Event]:
        with self.lock:
            return self.events[mark:]

    def assignment(self) -> set[int]:
        with self.lock:
            return set(self.now)

    def records(self) -> list[Event]:
        return [e for e in self.snapshot() if e.ev == "rec"]

    def errors(self) -> list[Event]:
        return [e for e in self.snapshot() if e.ev == "error"]

    def first_event_time(self, ev: str) -> float | None:
        for e in self.snapshot():
            if e.ev == ev:
                return e.t
        return None

    def alive(self) -> bool:
        return self.state == "running"

    def describe(self) -> str:
        evs = [e for e in self.snapshot() if e.ev != "rec"]
        recs = len(self.records())
        tail = "\n    ".join(self.stderr[-15:])
        return (f"{self.name} ({self.client}, {self.state}, exit {self.proc.poll()}): now={sorted(self.assignment())}, "
                f"{recs} records, events: {[(e.ev, e.data) for e in evs][-12:]}\n    stderr: {tail}")

    # --------------------------------------------------------------- control

    def send(self, command: str):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self, timeout_s: float = 30.0):
        """A clean close: the member leaves the group (a static member does not: it only stops).
        kcat has no stdin commands in -G mode; SIGINT makes it close its consumer."""
        if self.client == "kcat":
            self.proc.send_signal(signal.SIGINT)
        else:
            try:
                self.send("close")
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not close within {timeout_s}s: {self.describe()}")
        for t in self.threads:
            t.join(5)
        self.state = "closed"
        if self.client != "kcat":
            assert any(e.ev == "closed" for e in self.snapshot()), f"{self.name} exited without closing: {self.describe()}"

    def kill(self):
        """SIGKILL: no LeaveGroup, no commit; the broker finds out when the session times out."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for t in self.threads:
            t.join(5)
        if self.state == "running":
            self.state = "killed"


def member_command(client: str, bootstrap: str, topic: str, group: str, protocol: str = "classic",
                   assignor: str | None = None, instance_id: str | None = None, metadata: str = "",
                   session_ms: int = SESSION_MS, heartbeat_ms: int = HEARTBEAT_MS) -> list[str]:
    if client in ("confluent", "kafka-python", "aiokafka"):
        cmd = [sys.executable, str(WORKER), client, "--bootstrap", bootstrap, "--topic", topic, "--group", group,
               "--protocol", protocol, "--session-ms", str(session_ms), "--heartbeat-ms", str(heartbeat_ms),
               "--metadata", metadata]
    elif client == "java":
        cmd = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", JAVA_CLASSPATH, "dev.fjord.compat.Cli",
               "group-consume", "--bootstrap", bootstrap, "--topic", topic, "--group", group, "--protocol", protocol,
               "--session-ms", str(session_ms), "--heartbeat-ms", str(heartbeat_ms), "--metadata", metadata]
    elif client == "kcat":
        assert protocol == "classic" and assignor in (None, "range") and instance_id is None, \
            "kcat 1.7.1 (librdkafka 2.0.2): classic protocol, range assignor, no static membership here"
        return [KCAT, "-b", bootstrap, "-G", group, topic, "-J", "-u",
                "-X", "auto.offset.reset=earliest", "-X", f"session.timeout.ms={session_ms}",
                "-X", f"heartbeat.interval.ms={heartbeat_ms}", "-X", "partition.assignment.strategy=range",
                # Auto commit (kcat has no other): often, so a test can wait until it has happened.
                "-X", "auto.commit.interval.ms=100"]
    else:
        raise ValueError(client)
    if assignor:
        cmd += ["--assignor", assignor]
    if instance_id:
        cmd += ["--instance-id", instance_id]
    return cmd


def start_member(name: str, client: str, bootstrap: str, topic: str, group: str, **kwargs) -> Member:
    return Member(name, client, member_command(client, bootstrap, topic, group, **kwargs))


# ------------------------------------------------------------------------------- the group view

def live(members) -> list[Member]:
    return [m for m in members if m.alive()]


def ownership(members) -> dict[int, list[str]]:
    """partition -> names of the live members that say they own it."""
    out: dict[int, list[str]] = {}
    for m in live(members):
        for p in m.assignment():
            out.setdefault(p, []).append(m.name)
    return out


def covered(members, partitions: int) -> bool:
    """Every partition owned by exactly one live member, and every live member owns one."""
    own = ownership(members)
    return (sorted(own) == list(range(partitions)) and all(len(v) == 1 for v in own.values())
            and all(m.assignment() for m in live(members)))


def last_assignment_event(members) -> float:
    return max(e.t for m in live(members) for e in m.snapshot() if e.ev in ("assigned", "revoked", "lost"))


def wait_stable(members, partitions: int, bootstrap: str, group: str, topic: str, what: str,
                timeout_s: float = 30.0) -> float:
    """The end of a rebalance: the live members split the partitions between them, and the
    coordinator says the group is Stable with exactly that assignment (DescribeGroups, or
    ConsumerGroupDescribe for KIP-848, whose members may own a partition the target assignment
    already gives to another until they have revoked it). Returns the arrival time of the last
    assignment event."""
    seen = []

    def ok():
        for m in members:
            if m.alive() and m.proc.poll() is not None:
                raise AssertionError(f"{m.name} exited: {m.describe()}")
        if not covered(members, partitions):
            return False
        state, _, got = broker_assignment(bootstrap, group, topic)
        seen[:] = [(state, got)]
        return state == "STABLE" and sorted(sorted(ps) for _, ps in got) == sorted(sorted(m.assignment()) for m in live(members))

    try:
        wait_for(ok, what, timeout_s=timeout_s, interval_s=0.05)
    except AssertionError as e:
        raise AssertionError(f"{e}\nownership {ownership(members)}; the broker said {seen}\n"
                             + "\n".join(m.describe() for m in members)) from None
    return last_assignment_event(members)


# ----------------------------------------------------------------------------- records, offsets

class Log:
    """What the test produced to a topic: partition -> values in offset order."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.values: dict[int, list[str]] = {p: [] for p in range(partitions)}

    def produce(self, tag: str, per_partition: int):
        recs = [Rec(None, f"{tag}-{p}-{i}".encode(), (), p) for i in range(per_partition) for p in range(self.partitions)]
        acks = produce("confluent", self.bootstrap, self.topic, recs)
        assert_ok(acks)
        for r, a in zip(recs, acks):
            assert a.offset == len(self.values[a.partition]), f"partition {a.partition}: offset {a.offset}, expected {len(self.values[a.partition])}"
            self.values[a.partition].append(r.value.decode())

    def ends(self) -> dict[int, int]:
        return {p: len(v) for p, v in self.values.items()}


_ADMINS: dict[tuple[str, str], object] = {}


def _admin(bootstrap: str, client: str = "confluent"):
    """One AdminClient per broker and client, kept: a destroyed confluent-kafka AdminClient
    cancels its futures, and a new kafka-python one costs a bootstrap round trip."""
    key = (bootstrap, client)
    if key not in _ADMINS:
        if client == "confluent":
            from confluent_kafka.admin import AdminClient

            _ADMINS[key] = AdminClient({"bootstrap.servers": bootstrap})
        else:
            from kafka.admin import KafkaAdminClient

            _ADMINS[key] = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    return _ADMINS[key]


def forget(bootstrap: str):
    """Drops the admin clients kept for a broker that is going away."""
    for key in [k for k in _ADMINS if k[0] == bootstrap]:
        a = _ADMINS.pop(key)
        if key[1] == "kafka-python":
            a.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int, str | None]]:
    """The group's committed offsets for `topic`: partition -> (offset, metadata), read with
    kafka-python's admin (OffsetFetch), which gives the metadata's bytes as stored. Not with
    confluent-kafka: it reads metadata another client committed as a C string, past its end
    (garbage, UnicodeDecodeError or a segfault; FINDINGS.md)."""
    got = _admin(bootstrap, "kafka-python").list_group_offsets({group: None})[group]
    return {tp.partition: (om.offset, om.metadata) for tp, om in got.items() if tp.topic == topic and om.offset >= 0}


def committed_metadata(bootstrap: str, group: str, topic: str) -> dict[int, str]:
    """partition -> committed metadata (see committed_offsets)."""
    return {p: md for p, (_, md) in committed_offsets(bootstrap, group, topic).items()}


#: confluent-kafka-python sends a commit's metadata with the C string's NUL at the end (FINDINGS.md).
COMMIT_METADATA_SUFFIX = {"confluent": "\x00"}


def wait_committed(bootstrap: str, group: str, log: Log, members=(), timeout_s: float = 30.0):
    """Until the group has committed every record of `log` (nothing left to read or commit)."""
    want = {p: e for p, e in log.ends().items() if e > 0}

    def events_caught_up():
        # A worker prints its records before the commit that covers them, but this process
        # reads those lines on another thread: a commit can reach the broker before the
        # records reach us. Its own "committed" line comes after them, so wait for that too
        # (kcat prints no commits; there the broker's word has to do).
        if any(m.client == "kcat" for m in members):
            return True
        seen: dict[int, int] = {}
        for m in members:
            for e in m.snapshot():
                if e.ev == "committed":
                    for p, o in e.data["offsets"].items():
                        seen[int(p)] = max(seen.get(int(p), 0), o)
        return all(seen.get(p, 0) >= e for p, e in want.items())

    def done():
        got = {p: o for p, (o, _) in committed_offsets(bootstrap, group, log.topic).items()}
        return all(got.get(p) == e for p, e in want.items()) and events_caught_up()

    try:
        wait_for(done, f"group {group} to commit {want}", timeout_s=timeout_s, interval_s=0.1)
    except AssertionError as e:
        got = committed_offsets(bootstrap, group, log.topic)
        raise AssertionError(f"{e}; committed {got}\n" + "\n".join(m.describe() for m in members)) from None


def assert_read_everything(members, log: Log):
    """The group as a whole read every record at least once: per partition, the offsets read are
    exactly 0..end-1 (no gap, nothing beyond), each with the value produced there."""
    seen: dict[int, set[int]] = {p: set() for p in range(log.partitions)}
    problems = []
    for m in members:
        for e in m.records():
            p, o, v = e.data["p"], e.data["o"], e.data["v"]
            if o >= len(log.values[p]) or log.values[p][o] != v:
                problems.append(f"{m.name} read {v!r} at {p}/{o}, produced there: "
                                f"{log.values[p][o] if o < len(log.values[p]) else None!r}")
            seen[p].add(o)
    for p, offs in seen.items():
        missing = sorted(set(range(len(log.values[p]))) - offs)
        if missing:
            problems.append(f"partition {p}: offsets {missing} never read")
    assert not problems, "\n".join(problems[:20]) + "\n" + "\n".join(m.describe() for m in members)


def first_reads_after_assignment(m: Member, mark: int) -> list[tuple[int, int | None, float]]:
    """For each time `m` was given a partition after event index `mark`: (partition, the first
    offset it read from it, None if it has read nothing from it yet, and when it was given it). A
    partition taken away again before anything was read from it does not count."""
    out: list[tuple[int, int | None, float]] = []
    waiting: dict[int, int] = {}  # partition -> index in out
    for e in m.since(mark):
        if e.ev == "assigned":
            for p in e.data["added"]:
                if p not in waiting:
                    waiting[p] = len(out)
                    out.append((p, None, e.t))
        elif e.ev in ("revoked", "lost"):
            for p in e.data["removed"]:
                if p in waiting:
                    out[waiting.pop(p)] = (p, "dropped", 0.0)
        elif e.ev == "rec" and e.data["p"] in waiting:
            i = waiting.pop(e.data["p"])
            out[i] = (e.data["p"], e.data["o"], out[i][2])
    return [h for h in out if h[1] != "dropped"]


def commits_reported(members, mark_of) -> list[tuple[float, int, int]]:
    """(time, partition, offset) of every commit a member reported after its mark."""
    out = []
    for m in members:
        if m.name in mark_of:
            for e in m.since(mark_of[m.name]):
                if e.ev == "committed":
                    out.extend((e.t, int(p), o) for p, o in e.data["offsets"].items())
    return sorted(out)


def assert_resumed_from(members, marks: dict[str, int], expected: dict[int, int], only: set[int] | None = None):
    """The first member handed each partition after its mark read it from exactly `expected[p]`
    (the group's committed offset then): nothing committed was read again, nothing skipped. A later
    handover of the same partition (a member that rejoins on its own, say) must read from the last
    commit reported before it, or read nothing when that commit left nothing to read. With `only`,
    just those partitions, and each of them must have been handed to someone."""
    problems = []
    handovers = sorted((t, p, first, m.name) for m in members if m.name in marks
                       for p, first, t in first_reads_after_assignment(m, marks[m.name])
                       if only is None or p in only)
    commits = commits_reported(members, marks)
    seen: set[int] = set()
    for t, p, first, name in handovers:
        if p not in seen:
            seen.add(p)
            want, why = expected[p], "the committed offset was"
        else:
            want = max((o for ct, cp, o in commits if cp == p and ct < t), default=expected[p])
            why = "a later handover; the last commit reported before it was"
            if first is None:
                continue
        if first != want:
            problems.append(f"{name} was given partition {p} and first read offset {first}, {why} {want}")
    if only is not None and only - seen:
        problems.append(f"partitions {sorted(only - seen)} were never handed to a live member")
    assert not problems, "\n".join(problems) + "\n" + "\n".join(m.describe() for m in members)


def broker_assignment(bootstrap: str, group: str, topic: str) -> tuple[str, str, list[tuple[str, set[int]]]]:
    """The group as DescribeGroups / ConsumerGroupDescribe report it (confluent-kafka's
    AdminClient): (state name, group type name, [(client id, partitions)])."""
    d = _admin(bootstrap, "confluent").describe_consumer_groups([group], request_timeout=15)[group].result(timeout=20)
    members = [(m.client_id, {tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic})
               for m in d.members]
    return d.state.name, d.type.name, members


# ------------------------------------------------------------------- simple (assign-mode) commits

def simple_commit(client: str, bootstrap: str, group: str, topic: str, offsets: dict[int, int], metadata: str):
    """Commits `offsets` for `group` from a consumer that has the group id but never subscribes:
    it assign()s the partitions and commits synchronously, with `metadata`. `client` is
    confluent, confluent-consumer, kafka-python, aiokafka, java or java-consumer (the -consumer
    ones with group.protocol=consumer)."""
    if client in ("confluent", "confluent-consumer"):
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                      "group.protocol": "consumer" if client.endswith("-consumer") else "classic"})
        try:
            tps = [TopicPartition(topic, p, o, metadata) for p, o in offsets.items()]
            c.assign([TopicPartition(topic, p) for p in offsets])
            res = c.commit(offsets=tps, asynchronous=False)
            bad = [(tp.partition, tp.error) for tp in res if tp.error]
            assert not bad, f"confluent-kafka commit: {bad}"
        finally:
            c.close()
    elif client == "kafka-python":
        from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

        c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        try:
            c.assign([TopicPartition(topic, p) for p in offsets])
            c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, metadata, -1) for p, o in offsets.items()})
        finally:
            c.close()
    elif client == "aiokafka":
        import asyncio

        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.structs import OffsetAndMetadata

        async def go():
            c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
            await c.start()
            try:
                c.assign([TopicPartition(topic, p) for p in offsets])
                await c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, metadata) for p, o in offsets.items()})
            finally:
                await c.stop()

        asyncio.run(go())
    elif client in ("java", "java-consumer"):
        from clientlib import java

        args = ["commit", "--bootstrap", bootstrap, "--group", group, "--topic", topic, "--metadata", metadata,
                "--protocol", "consumer" if client.endswith("-consumer") else "classic"]
        for p, o in offsets.items():
            args += ["--offset", f"{p}={o}"]
        assert java(*args) == [{"ok": True}]
    else:
        raise ValueError(client)


def fetch_committed(client: str, bootstrap: str, group: str, topic: str, partitions) -> dict[int, tuple[int | None, str | None]]:
    """The committed offsets as a fresh consumer of `client` (same group id, no subscription)
    sees them: partition -> (offset or None, metadata or None where the client does not show it)."""
    if client in ("confluent", "confluent-consumer"):
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                      "group.protocol": "consumer" if client.endswith("-consumer") else "classic"})
        try:
            got = c.committed([TopicPartition(topic, p) for p in partitions], timeout=20)
            return {tp.partition: (tp.offset if tp.offset >= 0 else None, tp.metadata) for tp in got}
        finally:
            c.close()
    if client == "kafka-python":
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        try:
            out = {}
            for p in partitions:
                om = c.committed(TopicPartition(topic, p), metadata=True)
                out[p] = (None, None) if om is None else (om.offset, om.metadata)
            return out
        finally:
            c.close()
    if client == "aiokafka":
        import asyncio

        from aiokafka import AIOKafkaConsumer, TopicPartition

        async def go():
            c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
            await c.start()
            try:
                # aiokafka's committed() gives the offset only.
                return {p: (await c.committed(TopicPartition(topic, p)), None) for p in partitions}
            finally:
                await c.stop()

        return asyncio.run(go())
    if client in ("java", "java-consumer"):
        from clientlib import java

        lines = java("committed", "--bootstrap", bootstrap, "--group", group, "--topic", topic,
                     "--protocol", "consumer" if client.endswith("-consumer") else "classic")
        return {l["partition"]: (l["offset"], l["metadata"]) for l in lines if l["partition"] in set(partitions)}
    raise ValueError(client)
