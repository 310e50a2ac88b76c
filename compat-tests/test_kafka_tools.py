"""Kafka 4.4's own command-line tools against the broker, run the way the distribution's scripts
run them (`kafka-run-class.sh` is `java -cp <jars> <main class>`), from the kafka-tools 4.4.0
artifact the Java module already ships: kafka-topics, the console producer and consumer,
kafka-consumer-groups, the producer and consumer perf tests, the verifiable producer and consumer,
kafka-get-offsets, kafka-delete-records, kafka-log-dirs, kafka-cluster, kafka-metadata-quorum,
kafka-transactions, kafka-leader-election and kafka-reassign-partitions; and kcat in each of its
modes. Every check parses what the tool printed and holds it against what was produced, what
another client reads or what another tool says, not only its exit status.

The single-node tools share one broker per xdist worker (the group settings of test_groups.py, so
joins do not wait out an initial rebalance delay). The 3-node tools run in one test on one cluster:
with `-n 2` two tests could land on both workers and start two clusters (six JVMs on the
reference). Runs against Kafka 4.4 too (reference/kafka-as-fjord); what passes there and fails on
Fjord is a Fjord bug, marked `fjord_gap` (strict xfail on Fjord only) with what differs.

Left out, since Fjord has no such feature yet (kafka-cluster api-versions lists the APIs it lacks):
kafka-acls, kafka-delegation-tokens and SCRAM users (no ACLs, no SASL), kafka-share-groups (no
share groups; kafka-streams-groups is in test_streams_groups.py), kafka-client-metrics (no KIP-714 telemetry),
client quotas (no DescribeClientQuotas/AlterClientQuotas), `kafka-cluster unregister` (no
UnregisterBroker), moves between log dirs (no AlterReplicaLogDirs; one log dir per broker),
`--bootstrap-controller` (KIP-919: Fjord's controller listener serves the quorum only, as README
says), and a throttled reassignment caught in progress by `--list` and `--cancel`: Fjord accepts
`--throttle` and stores the rates but does not enforce them (README), so its moves finish before
either can see them. kafka-configs and kafka-features have their own tiers
(test_dynamic_configs.py, test_features.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, ResourceType

from clientlib import JAVA_CLASSPATH, KCAT, Rec, assert_ok, consume, kcat, kcat_json_lines, produce
from conftest import REFERENCE, group_overrides, wait_for

TOOLS = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-producer-perf-test": "org.apache.kafka.tools.ProducerPerformance",
    "kafka-consumer-perf-test": "org.apache.kafka.tools.ConsumerPerformance",
    "kafka-verifiable-producer": "org.apache.kafka.tools.VerifiableProducer",
    "kafka-verifiable-consumer": "org.apache.kafka.tools.VerifiableConsumer",
    "kafka-get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "kafka-log-dirs": "org.apache.kafka.tools.LogDirsCommand",
    "kafka-cluster": "org.apache.kafka.tools.ClusterTool",
    "kafka-metadata-quorum": "org.apache.kafka.tools.MetadataQuorumCommand",
    "kafka-transactions": "org.apache.kafka.tools.TransactionsCommand",
    "kafka-leader-election": "org.apache.kafka.tools.LeaderElectionCommand",
    "kafka-reassign-partitions": "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
}

#: C1 only and serial GC, as clientlib.java(): these JVMs live a second or two, start-up is the cost.
JVM = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", JAVA_CLASSPATH]


def fjord_gap(reason: str):
    """A test that passes on Kafka 4.4 and fails on Fjord today for `reason`. Strict, so a fix
    shows up as a failure until the mark goes (known-failures.txt's rule, kept in this file)."""
    return pytest.mark.xfail(not REFERENCE and os.environ.get("FJORD_COMPAT_STRICT") != "1",
                             reason=reason, strict=True)


# ------------------------------------------------------------------------------------ running tools

def tool(name: str, *args, stdin: str | None = None, rc: int | None = 0, timeout_s: float = 90):
    """Runs one tool to its end. `rc` is the exit status it must have (None: any)."""
    cmd = [*JVM, TOOLS[name], *map(str, args)]
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout_s)
    if rc is not None and p.returncode != rc:
        raise AssertionError(f"{name} {' '.join(map(str, args))}: exit {p.returncode}, expected {rc}\n"
                             f"--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-4000:]}")
    return p


def topics(b, *args, **kw):
    return tool("kafka-topics", "--bootstrap-server", b, *args, **kw)


def groups(b, *args, **kw):
    return tool("kafka-consumer-groups", "--bootstrap-server", b, *args, **kw)


def txns(b, *args, **kw):
    return tool("kafka-transactions", "--bootstrap-server", b, *args, **kw)


class Background:
    """A tool (or kcat) left running, its output lines collected as they come."""

    def __init__(self, what: str, cmd: list[str]):
        self.what = what
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(s, sink), daemon=True)
                         for s, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    @classmethod
    def tool(cls, name: str, *args) -> "Background":
        return cls(name, [*JVM, TOOLS[name], *map(str, args)])

    @staticmethod
    def _pump(stream, sink):
        for line in stream:
            sink.append(line.rstrip("\n"))

    def events(self) -> list[dict]:
        return [json.loads(l) for l in list(self.out) if l.startswith("{")]

    def describe(self) -> str:
        return (f"{self.what} (exit {self.proc.poll()}):\n--- stdout (last 20)\n" + "\n".join(self.out[-20:])
                + "\n--- stderr (last 20)\n" + "\n".join(self.err[-20:]))

    def wait(self, timeout_s: float = 60) -> int:
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.what} still running after {timeout_s}s\n{self.describe()}")
        for t in self._threads:
            t.join(5)
        return rc

    def stop(self, sig=signal.SIGTERM, timeout_s: float = 30) -> int:
        """A clean stop: the JVM's shutdown hooks (and kcat's signal handler) close the client."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout_s)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


# ---------------------------------------------------------------------------------- parsing output

def table(text: str, first: str) -> list[dict]:
    """The rows of a table whose header line starts with `first`, as dicts by header: aligned with
    spaces (kafka-consumer-groups) or tab-separated with padding and empty cells (kafka-transactions,
    kafka-metadata-quorum)."""
    rows, header = [], None
    for line in text.splitlines():
        cells = [c.strip() for c in line.rstrip("\t").split("\t")] if "\t" in line else line.split()
        if not cells:
            header = None
        elif cells[0] == first:
            header = cells
        elif header is not None and len(cells) == len(header):
            rows.append(dict(zip(header, cells)))
    return rows


def group_offsets(b, group) -> dict[tuple[str, int], tuple[str, str, str]]:
    """(topic, partition) -> (CURRENT-OFFSET, LOG-END-OFFSET, LAG) as `--describe` prints them."""
    rows = table(groups(b, "--describe", "--group", group).stdout, "GROUP")
    return {(r["TOPIC"], int(r["PARTITION"])): (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) for r in rows}


def new_offsets(text: str) -> dict[tuple[str, int], int]:
    """What `--reset-offsets` says it sets (or would set, in a dry run)."""
    return {(r["TOPIC"], int(r["PARTITION"])): int(r["NEW-OFFSET"]) for r in table(text, "GROUP")}


@dataclass
class TopicDescription:
    topic_id: str
    partition_count: int
    replication_factor: int
    configs: dict[str, str]
    #: partition -> (leader, replicas, isr)
    partitions: dict[int, tuple[int, list[int], list[int]]] = field(default_factory=dict)


def _ids(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def describe_topic(b, topic) -> TopicDescription:
    out = topics(b, "--describe", "--topic", topic).stdout
    head = re.search(r"^Topic: (\S+)\tTopicId: (\S+)\tPartitionCount: (\d+)\tReplicationFactor: (\d+)\t"
                     r"Configs: ?(.*)$", out, re.M)
    assert head and head[1] == topic, out
    # Values may hold commas themselves (throttled replica lists): a key starts after a comma.
    configs = dict(re.findall(r"([a-z0-9.]+)=(.*?)(?=,[a-z0-9.]+=|$)", head[5]))
    d = TopicDescription(head[2], int(head[3]), int(head[4]), configs)
    for m in re.finditer(r"^\tTopic: \S+\tPartition: (\d+)\tLeader: (\S+)\tReplicas: (\S*)\tIsr: (\S*)", out, re.M):
        leader = int(m[2]) if m[2].lstrip("-").isdigit() else -1
        d.partitions[int(m[1])] = (leader, _ids(m[3]), _ids(m[4]))
    assert len(d.partitions) == d.partition_count, out
    return d


def key_values(text: str) -> dict[str, str]:
    """`Key:   value` lines (kafka-metadata-quorum describe --status)."""
    return {m[1]: m[2].strip() for m in re.finditer(r"^(\w+):\s+(.*)$", text, re.M)}


def offsets_tool(b, topic, time_spec, *extra) -> dict[int, int]:
    """kafka-get-offsets: partition -> offset (a partition with no answer is left out, as the
    tool leaves it out)."""
    out = tool("kafka-get-offsets", "--bootstrap-server", b, "--topic", topic, "--time", time_spec, *extra).stdout
    found = {}
    for line in out.splitlines():
        t, p, o = line.rsplit(":", 2)
        assert t == topic, out
        found[int(p)] = int(o)
    return found


def watermarks(b, topic, partitions, isolation="read_uncommitted") -> dict[int, tuple[int, int]]:
    c = Consumer({"bootstrap.servers": b, "group.id": "fjord-compat-unused", "isolation.level": isolation})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False) for p in partitions}
    finally:
        c.close()


def topic_configs(b, topic) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": b})
    res = ConfigResource(ResourceType.TOPIC, topic)
    return {k: v.value for k, v in admin.describe_configs([res])[res].result(30).items()}


def broker_dynamic_configs(b, node_id) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": b})
    res = ConfigResource(ResourceType.BROKER, str(node_id))
    return {k: v.value for k, v in admin.describe_configs([res])[res].result(30).items()
            if v.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value}


def rec(key, value, partition, headers=(), timestamp=None) -> Rec:
    enc = lambda s: s.encode() if isinstance(s, str) else s
    return Rec(enc(key), enc(value), tuple((k, enc(v)) for k, v in headers), partition, timestamp)


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def tb(start_broker):
    """This module's single broker: auto-create off, so a typo in a tool's topic fails."""
    return start_broker("kafka-tools", **group_overrides(**{"auto.create.topics.enable": "false"}))


@pytest.fixture(scope="module")
def cluster(start_cluster):
    # No automatic preferred-leader rebalance: the leader-election check moves leaders itself.
    return start_cluster("kafka-tools", 3, **{"auto.leader.rebalance.enable": "false"})


# -------------------------------------------------------------------------------------- kafka-topics

def test_kafka_topics_create_list_describe_alter_delete(tb, topic_name):
    b, t = tb.bootstrap, topic_name
    out = topics(b, "--create", "--topic", t, "--partitions", 3, "--replication-factor", 1,
                 "--config", "retention.ms=123456", "--config", "cleanup.policy=compact",
                 "--config", "max.message.bytes=65536").stdout
    # (Before it, a warning that names with '.' or '_' may collide in metric names.)
    assert out.strip().splitlines()[-1] == f"Created topic {t}.", out

    p = topics(b, "--create", "--topic", t, "--partitions", 1, rc=1)
    assert f"Topic '{t}' already exists." in p.stdout, p.stdout
    assert "Created" not in topics(b, "--create", "--topic", t, "--partitions", 1, "--if-not-exists").stdout
    p = topics(b, "--create", "--topic", f"{t}-bad", "--partitions", 1, "--config", "retention.ms=abc", rc=1)
    assert "Invalid value abc for configuration retention.ms: Not a number of type LONG" in p.stdout, p.stdout
    p = topics(b, "--create", "--topic", f"{t}-bad", "--partitions", 1, "--config", "no.such.config=1", rc=1)
    assert "Unknown topic config name: no.such.config" in p.stdout, p.stdout

    # Kafka's brokers learn of a topic from the metadata log a moment after the controller answers.
    listed = wait_for(lambda: t in (names := topics(b, "--list").stdout.split()) and names, f"{t} in --list")
    assert f"{t}-bad" not in listed, listed

    d = wait_for(lambda: describe_topic(b, t), f"{t} described")
    assert (d.partition_count, d.replication_factor) == (3, 1), d
    # Kafka 4.4 also shows min.insync.replicas=1: a cluster-wide default that its eligible leader
    # replicas feature (KIP-966, not in Fjord) sets when the cluster is formatted.
    assert {"retention.ms": "123456", "cleanup.policy": "compact", "max.message.bytes": "65536"}.items() \
        <= d.configs.items(), d.configs
    assert d.partitions == {p: (1, [1], [1]) for p in range(3)}, d.partitions
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", d.topic_id), d.topic_id
    out = topics(b, "--describe", "--topic", t, "--topics-with-overrides").stdout
    assert out.startswith(f"Topic: {t}\tTopicId: {d.topic_id}\t"), out
    for flag in ("--under-replicated-partitions", "--unavailable-partitions", "--under-min-isr-partitions"):
        assert topics(b, "--describe", "--topic", t, flag).stdout.strip() == "", flag

    # The --config given is in force: a record over max.message.bytes is refused.
    [big] = produce("confluent", b, t, [rec(None, b"x" * 100_000, 0)])
    assert big.error == "MSG_SIZE_TOO_LARGE", big

    topics(b, "--alter", "--topic", t, "--partitions", 5)
    d2 = wait_for(lambda: (d := describe_topic(b, t)).partition_count == 5 and d, "5 partitions")
    assert d2.topic_id == d.topic_id and d2.partitions[3] == d2.partitions[4] == (1, [1], [1]), d2
    [ack] = produce("confluent", b, t, [rec("k", "to a new partition", 4)])
    assert (ack.error, ack.partition, ack.offset) == (None, 4, 0), ack

    topics(b, "--delete", "--topic", t)
    wait_for(lambda: t not in topics(b, "--list").stdout.split(), f"{t} gone from --list")
    p = topics(b, "--describe", "--topic", t, rc=1)
    assert f"Topic '{t}' does not exist as expected" in p.stdout, p.stdout
    # The same name again is another topic.
    topics(b, "--create", "--topic", t, "--partitions", 1)
    d3 = wait_for(lambda: describe_topic(b, t), f"{t} described again")
    assert d3.topic_id != d.topic_id and d3.partition_count == 1, d3


@pytest.mark.kafka_min_version("4.4", reason="the texts are Kafka 4.4's: 4.1's replication factor refusal ends at "
                               "'... because only 1 broker(s) are registered.', without ' or some brokers have all "
                               "their log directories cordoned.' (KIP-1066)")
def test_kafka_topics_refusals_carry_kafkas_messages(tb, new_topic):
    b = tb.bootstrap
    t = new_topic(tb, 3)

    def refused(*args) -> str:
        # The last line: a name with '_' gets a warning about '.' first.
        p = topics(b, *args, rc=1)
        return p.stdout.strip().splitlines()[-1].removeprefix("Error while executing topic command : ")

    assert refused("--alter", "--topic", t, "--partitions", 2) == \
        f"The topic {t} currently has 3 partition(s); 2 would not be an increase."
    assert refused("--alter", "--topic", t, "--partitions", 3) == "Topic already has 3 partition(s)."
    assert refused("--alter", "--topic", t, "--partitions", 4, "--replica-assignment", "1,1,1,4") == \
        "The manual partition assignment includes broker 4, but no such broker is registered."
    assert refused("--create", "--topic", f"{t}-ra", "--replica-assignment", "4") == \
        "The manual partition assignment includes broker 4, but no such broker is registered."
    assert refused("--create", "--topic", f"{t}-rf", "--partitions", 1, "--replication-factor", 2) == \
        ("Unable to replicate the partition 2 time(s): The target replication factor of 2 cannot be reached "
         "because only 1 broker(s) are registered or some brokers have all their log directories cordoned.")
    assert refused("--create", "--topic", "a/b", "--partitions", 1) == \
        "Topic name is invalid: 'a/b' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'"
    long_name = "x" * 250
    assert refused("--create", "--topic", long_name, "--partitions", 1) == \
        f"Topic name is invalid: the length of '{long_name}' is longer than the max allowed length 249"


def test_kafka_topics_refuses_a_name_colliding_with_another_in_metrics(tb, topic_name):
    b = tb.bootstrap
    dotted = f"{topic_name}.x"
    topics(b, "--create", "--topic", dotted, "--partitions", 1)
    underscored = dotted.replace(".", "_")
    p = topics(b, "--create", "--topic", underscored, "--partitions", 1, rc=1)
    assert f"Topic '{underscored}' collides with existing topic: {dotted}" in p.stdout, p.stdout
    assert underscored not in topics(b, "--list").stdout.split()


# ----------------------------------------------------------------- console producer and consumer

CONSOLE_LINES = [
    # headers \t key \t value, as the console producer's parse.headers and parse.key read them;
    # NULL is the null.marker given below.
    ("trace:t-1,user:alice\tk1\tfirst value", [("trace", "t-1"), ("user", "alice")], "k1", "first value"),
    ("trace:t-2\tk2\tvärde ✓ with a\ttab", [("trace", "t-2")], "k2", "värde ✓ with a\ttab"),
    ("NULL\tk3\tno headers", [], "k3", "no headers"),
    ("h:NULL\tk4\ta null header value", [("h", None)], "k4", "a null header value"),
    ("h:x\tNULL\ta null key", [("h", "x")], None, "a null key"),
    ("h:y\tk1\tNULL", [("h", "y")], "k1", None),
    ("h:z\tk6\t", [("h", "z")], "k6", ""),
]


def console_consume(b, topic, *args, timeout_s=60):
    """The console consumer with every field printed, tab-separated; returns (lines, stderr)."""
    p = tool("kafka-console-consumer", "--bootstrap-server", b, "--topic", topic, *args,
             *[a for f in ("timestamp", "partition", "offset", "headers", "key") for a in
               ("--formatter-property", f"print.{f}=true")],
             "--formatter-property", "null.literal=<null>", timeout_s=timeout_s)
    return p.stdout.splitlines(), p.stderr


def printed(r: Rec) -> str:
    """A record as the console consumer prints it with the options console_consume() gives."""
    s = lambda v: "<null>" if v is None else v.decode()
    headers = ",".join(f"{k}:{s(v)}" for k, v in r.headers) or "NO_HEADERS"
    return f"CreateTime:{r.timestamp}\tPartition:{r.partition}\tOffset:{r.offset}\t{headers}\t{s(r.key)}\t{s(r.value)}"


def test_console_producer_and_consumer_round_trip(tb, new_topic):
    b = tb.bootstrap
    t = new_topic(tb, 2)
    tool("kafka-console-producer", "--bootstrap-server", b, "--topic", t, "--reader-property", "parse.key=true",
         "--reader-property", "parse.headers=true", "--reader-property", "null.marker=NULL",
         stdin="".join(line + "\n" for line, *_ in CONSOLE_LINES))

    # What another client reads is exactly what the lines said, each partition in input order.
    expected = [(None if k is None else k.encode(), None if v is None else v.encode(),
                 tuple((hk, None if hv is None else hv.encode()) for hk, hv in hs)) for _, hs, k, v in CONSOLE_LINES]
    got = consume("confluent", b, t, len(expected))
    assert sum(hi for _, hi in watermarks(b, t, (0, 1)).values()) == len(expected)
    assert sorted(map(repr, (r.content() for r in got))) == sorted(map(repr, expected)), got
    for part in (0, 1):
        order = [expected.index(r.content()) for r in got if r.partition == part]
        assert order == sorted(order), f"partition {part} out of input order: {order}"
    k1_partition = next(r.partition for r in got if r.key == b"k1")
    assert [r.content()[1] for r in got if r.key == b"k1"] == [b"first value", None], "same key, same partition"

    group = f"console-{t}"
    lines, err = console_consume(b, t, "--from-beginning", "--max-messages", len(expected), "--group", group)
    assert sorted(lines) == sorted(printed(r) for r in got), "\n".join(lines)
    assert f"Processed a total of {len(expected)} messages" in err, err

    # The group committed where it stopped: the next member reads the new lines only.
    tool("kafka-console-producer", "--bootstrap-server", b, "--topic", t, stdin="late one\nlate two\n")
    p = tool("kafka-console-consumer", "--bootstrap-server", b, "--topic", t, "--group", group,
             "--max-messages", 2, "--timeout-ms", 20000)
    assert sorted(p.stdout.splitlines()) == ["late one", "late two"], p.stdout + p.stderr

    # --partition/--offset without a group, and --max-messages stopping short of the end.
    lines, err = console_consume(b, t, "--partition", k1_partition, "--offset", 1, "--max-messages", 1)
    at1 = [r for r in got if r.partition == k1_partition and r.offset == 1]
    assert lines == [printed(at1[0])], lines
    assert "Processed a total of 1 messages" in err, err


# -------------------------------------------------------------------------------- consumer groups

def produce_layout(b, t, counts: dict[int, int], tag="v") -> list:
    acks = produce("confluent", b, t, [rec(f"k{p}-{i}", f"{tag}{p}-{i}", p) for p, n in counts.items()
                                       for i in range(n)])
    assert_ok(acks)
    return acks


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_consumer_groups_list_and_describe_a_live_group(tb, new_topic, protocol):
    b = tb.bootstrap
    t = new_topic(tb, 3)
    produce_layout(b, t, {0: 6, 1: 4})
    g = f"live-{t}"
    member = Background.tool("kafka-console-consumer", "--bootstrap-server", b, "--topic", t, "--group", g,
                             "--from-beginning", "--command-property", f"group.protocol={protocol}",
                             "--command-property", "auto.commit.interval.ms=200")
    with member:
        wait_for(lambda: len(member.out) >= 10, "the member read all 10 records", timeout_s=30)

        def live_rows():
            return table(groups(b, "--describe", "--group", g).stdout, "GROUP")

        # Auto commit runs every 200 ms; the empty partition is committed at 0 too (its position
        # is valid once reset to the earliest offset).
        rows = wait_for(lambda: (rs := live_rows()) and {(r["PARTITION"], r["CURRENT-OFFSET"], r["LOG-END-OFFSET"],
                                                           r["LAG"]) for r in rs}
                        == {("0", "6", "6", "0"), ("1", "4", "4", "0"), ("2", "0", "0", "0")} and rs,
                        "describe: every record committed, lag 0", timeout_s=20)
        member_ids = {r["CONSUMER-ID"] for r in rows}
        assert len(member_ids) == 1 and "-" not in member_ids, rows
        assert {(r["HOST"], r["CLIENT-ID"]) for r in rows} == {("/127.0.0.1", "console-consumer")}, rows
        [member_id] = member_ids

        [m] = table(groups(b, "--describe", "--group", g, "--members", "--verbose").stdout, "GROUP")
        assert (m["CONSUMER-ID"], m["#PARTITIONS"], m["CURRENT-ASSIGNMENT"]) == (member_id, "3", f"{t}:0,1,2"), m
        [s] = table(groups(b, "--describe", "--group", g, "--state", "--verbose").stdout, "GROUP")
        assert (s["COORDINATOR"], s["(ID)"], s["STATE"], s["#MEMBERS"]) == (tb.bootstrap, "(1)", "Stable", "1"), s
        if protocol == "classic":
            assert s["ASSIGNMENT-STRATEGY"] == "range", s
            assert (m["CURRENT-EPOCH"], m["TARGET-EPOCH"], s["GROUP-EPOCH"]) == ("-", "-", "-"), (m, s)
        else:
            # The broker's first assignor in group.consumer.assignors (Kafka's default: uniform).
            assert s["ASSIGNMENT-STRATEGY"] == "uniform", s
            assert m["CURRENT-EPOCH"] == m["TARGET-EPOCH"] == s["GROUP-EPOCH"] == s["TARGET-ASSIGNMENT-EPOCH"], (m, s)
            assert int(m["CURRENT-EPOCH"]) >= 1 and m["TARGET-ASSIGNMENT"] == f"{t}:0,1,2", m

        listed = {r["GROUP"]: r for r in table(groups(b, "--list", "--state", "--type").stdout, "GROUP")}
        assert (listed[g]["TYPE"], listed[g]["STATE"]) == (protocol.capitalize(), "Stable"), listed.get(g)
        assert g in groups(b, "--list", "--state", "stable").stdout.split()
        assert g not in groups(b, "--list", "--state", "empty").stdout.split()
        other = "consumer" if protocol == "classic" else "classic"
        assert g in groups(b, "--list", "--type", protocol).stdout.split()
        assert g not in groups(b, "--list", "--type", other).stdout.split()

        # What a live group refuses.
        p = groups(b, "--delete", "--group", g, rc=None)
        assert f"* Group '{g}' could not be deleted due to: org.apache.kafka.common.errors.GroupNotEmptyException: " \
               "The group is not empty." in p.stdout, p.stdout
        p = groups(b, "--reset-offsets", "--group", g, "--all-topics", "--to-earliest", "--execute", rc=None)
        assert f"Assignments can only be reset if the group '{g}' is inactive, but the current state is Stable." \
            in p.stdout + p.stderr, p.stdout + p.stderr
        p = groups(b, "--delete-offsets", "--group", g, "--topic", t, rc=None)
        assert "GroupSubscribedToTopicException" in p.stdout + p.stderr, p.stdout + p.stderr

        rc = member.stop()
        assert rc == 143, member.describe()  # SIGTERM: the shutdown hook closed the consumer

    # The member left: the group is empty, its offsets stay, and lag follows new records.
    [s] = table(groups(b, "--describe", "--group", g, "--state").stdout, "GROUP")
    assert (s["STATE"], s["#MEMBERS"]) == ("Empty", "0"), s
    produce_layout(b, t, {0: 5}, tag="late")
    p = groups(b, "--describe", "--group", g)
    assert f"Consumer group '{g}' has no active members." in p.stderr, p.stderr
    assert {(r["PARTITION"], r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"], r["CONSUMER-ID"])
            for r in table(p.stdout, "GROUP")} == {("0", "6", "11", "5", "-"), ("1", "4", "4", "0", "-"),
                                              ("2", "0", "0", "0", "-")}, p.stdout


def test_consumer_groups_reset_offsets_then_a_member_resumes_there(tb, new_topic):
    b = tb.bootstrap
    t = new_topic(tb, 2)
    produce_layout(b, t, {0: 6, 1: 4})
    g = f"reset-{t}"
    lines, _ = console_consume(b, t, "--group", g, "--from-beginning", "--max-messages", 10)
    assert len(lines) == 10, lines
    done = {(t, 0): ("6", "6", "0"), (t, 1): ("4", "4", "0")}
    assert group_offsets(b, g) == done

    # A dry run, explicit or by default, shows the plan and changes nothing.
    for mode in (["--dry-run"], []):
        out = groups(b, "--reset-offsets", "--group", g, "--all-topics", "--to-earliest", *mode).stdout
        assert new_offsets(out) == {(t, 0): 0, (t, 1): 0}, out
    assert group_offsets(b, g) == done, "a dry run changed the offsets"

    def reset(scope, *spec):
        return new_offsets(groups(b, "--reset-offsets", "--group", g, "--topic", scope, *spec, "--execute").stdout)

    assert reset(f"{t}:1", "--to-earliest") == {(t, 1): 0}
    assert group_offsets(b, g)[(t, 1)] == ("0", "4", "4")
    assert reset(f"{t}:0", "--to-offset", 2) == {(t, 0): 2}
    assert reset(f"{t}:0", "--shift-by", -1) == {(t, 0): 1}
    # Past the log end is clamped to it.
    assert reset(f"{t}:1", "--shift-by", 10) == {(t, 1): 4}
    out = groups(b, "--reset-offsets", "--group", g, "--topic", t, "--to-latest", "--dry-run").stdout
    assert new_offsets(out) == {(t, 0): 6, (t, 1): 4}, out
    assert group_offsets(b, g) == {(t, 0): ("1", "6", "5"), (t, 1): ("4", "4", "0")}

    # A member of the group starts exactly at the new offsets: p0 from 1, nothing of p1.
    lines, _ = console_consume(b, t, "--group", g, "--max-messages", 5, "--timeout-ms", 20000)
    got = [tuple(l.split("\t")[1:3] + l.split("\t")[-1:]) for l in lines]
    assert got == [("Partition:0", f"Offset:{o}", f"v0-{o}") for o in range(1, 6)], lines
    assert group_offsets(b, g) == done


def test_consumer_groups_delete_offsets_and_delete_group(tb, new_topic):
    b = tb.bootstrap
    t1, t2 = new_topic(tb, 2), new_topic(tb, 1)
    produce_layout(b, t1, {0: 2, 1: 2})
    produce_layout(b, t2, {0: 3})
    g = f"del-{t1}"
    tool("kafka-console-consumer", "--bootstrap-server", b, "--include", f"{re.escape(t1)}|{re.escape(t2)}",
         "--group", g, "--from-beginning", "--max-messages", 7)
    assert group_offsets(b, g) == {(t1, 0): ("2", "2", "0"), (t1, 1): ("2", "2", "0"), (t2, 0): ("3", "3", "0")}

    out = groups(b, "--delete-offsets", "--group", g, "--topic", t1).stdout
    assert f"Request succeeded for deleting offsets from group {g}." in out, out
    assert {(r["TOPIC"], r["PARTITION"], r["STATUS"]) for r in table(out, "TOPIC")} == \
        {(t1, "0", "Successful"), (t1, "1", "Successful")}, out
    assert group_offsets(b, g) == {(t2, 0): ("3", "3", "0")}
    out = groups(b, "--delete-offsets", "--group", g, "--topic", f"{t1}-none").stdout
    assert re.search(rf"^{re.escape(t1)}-none\s+-\s+Error: org\.apache\.kafka\.common\.errors\."
                     r"UnknownTopicOrPartitionException", out, re.M), out

    out = groups(b, "--delete", "--group", g).stdout
    assert f"Deletion of requested consumer groups ('{g}') was successful." in out, out
    assert g not in groups(b, "--list").stdout.split()
    p = groups(b, "--describe", "--group", g, rc=None)
    assert f"GroupIdNotFoundException: Group {g} not found." in p.stdout + p.stderr, p.stdout + p.stderr
    p = groups(b, "--delete", "--group", g, rc=None)
    assert f"* Group '{g}' could not be deleted due to: org.apache.kafka.common.errors.GroupIdNotFoundException: " \
           "The group id does not exist." in p.stdout, p.stdout


# ------------------------------------------------------------------------------------ perf tests

PERF_SUMMARY = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                          r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th\.$",
                          re.M)


def perf_summary(out: str) -> dict:
    found = PERF_SUMMARY.findall(out)
    assert found, out
    sent, rate, mb, avg, mx, p50, p95, p99, p999 = found[-1]
    s = dict(sent=int(sent), rate=float(rate), mb=float(mb), avg=float(avg), max=float(mx),
             p50=int(p50), p95=int(p95), p99=int(p99), p999=int(p999))
    assert s["rate"] > 0 and s["mb"] > 0, s
    assert s["p50"] <= s["p95"] <= s["p99"] <= s["p999"] <= s["max"] + 1 and s["avg"] <= s["max"], s
    return s


def test_producer_perf_test_and_consumer_perf_test(tb, new_topic):
    b = tb.bootstrap
    t = new_topic(tb, 3)
    out = tool("kafka-producer-perf-test", "--bootstrap-server", b, "--topic", t, "--num-records", 20000,
               "--record-size", 100, "--throughput", -1, "--command-property", "acks=all").stdout
    assert perf_summary(out)["sent"] == 20000
    assert sum(hi - lo for lo, hi in watermarks(b, t, range(3)).values()) == 20000

    # Transactional mode: a transaction every 50 ms, all committed at the end.
    tid = f"perf-{t}"
    out = tool("kafka-producer-perf-test", "--bootstrap-server", b, "--topic", t, "--num-records", 3000,
               "--record-size", 50, "--throughput", -1, "--transactional-id", tid,
               "--transaction-duration-ms", 50).stdout
    assert perf_summary(out)["sent"] == 3000
    [d] = table(txns(b, "describe", "--transactional-id", tid).stdout, "CoordinatorId")
    assert d["TransactionState"] == "CompleteCommit", d

    # The consumer perf test (read_committed) reads every record, not the transaction markers.
    out = tool("kafka-consumer-perf-test", "--bootstrap-server", b, "--topic", t, "--num-records", 23000,
               "--timeout", 30000, "--command-property", "isolation.level=read_committed").stdout
    header, values = [l for l in out.splitlines() if l.strip()][-2:]
    stats = dict(zip([h.strip() for h in header.split(",")], [v.strip() for v in values.split(",")]))
    assert int(stats["data.consumed.in.nMsg"]) == 23000, out
    assert stats["data.consumed.in.MB"] == f"{(20000 * 100 + 3000 * 50) / 1024 / 1024:.4f}", out


# ---------------------------------------------------------------- verifiable producer and consumer

@pytest.mark.parametrize("protocol", [
    "classic",
    # With KIP-848, a commit racing the rebalance carries an older member epoch: accepted for the
    # partitions the member had at that epoch (the assignment-epoch validator).
    "consumer",
])
def test_verifiable_producer_and_consumers_deliver_every_acked_record_once(tb, new_topic, tmp_path, protocol):
    """A producer at 1000 records/s into 4 partitions, two consumers of one group (the second joins
    mid-stream, so the partitions move): every acknowledged record is consumed exactly once, and
    the group's last commits are the partitions' ends."""
    b = tb.bootstrap
    t = new_topic(tb, 4)
    g = f"verifiable-{t}"
    consumer_args = ["--bootstrap-server", b, "--topic", t, "--group-id", g, "--group-protocol", protocol,
                     "--verbose", "--reset-policy", "earliest"]
    if protocol == "classic":
        conf = tmp_path / "consumer.properties"
        conf.write_text("heartbeat.interval.ms=500\n")
        consumer_args += ["--session-timeout", 6000, "--command-config", conf]
    n = 2000
    c1 = Background.tool("kafka-verifiable-consumer", *consumer_args)
    c2 = producer = None
    try:
        def owned(c) -> set[int]:
            # Eager (classic range) callbacks carry whole sets; KIP-848's carry what changed.
            now: set[int] = set()
            for e in c.events():
                parts = {p["partition"] for p in e.get("partitions", ())}
                if e["name"] == "partitions_assigned":
                    now |= parts
                elif e["name"] in ("partitions_revoked", "partitions_lost"):
                    now -= parts
            return now

        wait_for(lambda: owned(c1) == {0, 1, 2, 3}, "consumer 1 owns all 4 partitions", timeout_s=30)
        producer = Background.tool("kafka-verifiable-producer", "--bootstrap-server", b, "--topic", t,
                                   "--max-messages", n, "--throughput", 1000, "--repeating-keys", 40,
                                   "--value-prefix", 7)
        wait_for(lambda: sum(e["name"] == "record_data" for e in c1.events()) >= 200, "consumer 1 reading",
                 timeout_s=30)
        c2 = Background.tool("kafka-verifiable-consumer", *consumer_args)

        def owners():
            a1, a2 = owned(c1), owned(c2)
            return a1 and a2 and a1 | a2 == {0, 1, 2, 3} and not a1 & a2

        wait_for(owners, "the partitions shared by both consumers", timeout_s=30)
        assert producer.wait(60) == 0, producer.describe()
        pev = producer.events()
        [summary] = [e for e in pev if e["name"] == "tool_data"]
        assert summary["sent"] == summary["acked"] == n, summary
        acked = {(e["partition"], e["offset"]): (e["key"], e["value"]) for e in pev
                 if e["name"] == "producer_send_success"}
        assert len(acked) == n and not [e for e in pev if e["name"] == "producer_send_error"], pev[-3:]
        assert sorted(v for _, v in acked.values()) == sorted(f"7.{i}" for i in range(n))

        def consumed():
            return [(e["partition"], e["offset"], e["key"], e["value"]) for c in (c1, c2) for e in c.events()
                    if e["name"] == "record_data"]

        wait_for(lambda: {(p, o) for p, o, _, _ in consumed()} >= acked.keys(), "every acked record consumed",
                 timeout_s=30)
        for c in (c1, c2):
            c.stop()
            assert any(e["name"] == "shutdown_complete" for e in c.events()), c.describe()
    finally:
        for bg in (c1, c2, producer):
            if bg is not None:
                bg.kill()

    got = consumed()
    assert {(p, o): (k, v) for p, o, k, v in got} == acked, "consumed records differ from the acked ones"
    # A failed commit (a rebalance in between) lets its batch be read again; none is expected.
    commits = [e for c in (c1, c2) for e in c.events() if e["name"] == "offsets_committed"]
    assert all(e["success"] for e in commits), [e for e in commits if not e["success"]]
    dups = sorted(po for po, n in Counter((p, o) for p, o, _, _ in got).items() if n > 1)
    assert not dups, f"{len(dups)} records consumed twice: {dups[:10]}"
    ends = {}
    for p, o in acked:
        ends[p] = max(ends.get(p, 0), o + 1)
    last = {}
    for e in commits:
        for o in e["offsets"]:
            last[o["partition"]] = max(last.get(o["partition"], 0), o["offset"])
    assert last == ends, (last, ends)
    assert group_offsets(b, g) == {(t, p): (str(e), str(e), "0") for p, e in ends.items()}


# -------------------------------------------------------------- kafka-get-offsets, delete-records

def test_get_offsets_earliest_latest_by_time_and_delete_records(tb, new_topic, tmp_path):
    b = tb.bootstrap
    t = new_topic(tb, 2)
    # Timestamps of the recent past: old ones would fall to the 7-day retention at once.
    base = int(time.time() * 1000) - 600_000
    layout = [(0, 0), (0, 1000), (0, 2000), (0, 3000), (1, 500), (1, 2500)]
    assert_ok(produce("confluent", b, t, [rec(f"k{i}", f"v{i}", p, timestamp=base + dt)
                                          for i, (p, dt) in enumerate(layout)]))

    # Each special time once, by number or by name (the tool maps names to the same numbers).
    assert offsets_tool(b, t, -1) == {0: 4, 1: 2}
    assert offsets_tool(b, t, "earliest") == {0: 0, 1: 0}
    assert offsets_tool(b, t, "earliest-local") == {0: 0, 1: 0}
    assert offsets_tool(b, t, -3) == {0: 3, 1: 1}, "max-timestamp: the offset of each partition's newest record"
    # By time: the first offset whose timestamp is at or after it; none past the last.
    assert offsets_tool(b, t, base + 1000) == {0: 1, 1: 1}
    assert offsets_tool(b, t, base + 2600) == {0: 3}
    assert offsets_tool(b, t, base + 5000) == {}
    # Without remote storage there is no tiered offset (Kafka answers none, the tool prints nothing).
    assert offsets_tool(b, t, "latest-tiered") == {}
    assert offsets_tool(b, t, -1, "--partitions", "1") == {1: 2}
    out = tool("kafka-get-offsets", "--bootstrap-server", b, "--topic-partitions", f"{t}:0", "--time", -1).stdout
    assert out.split() == [f"{t}:0:4"], out

    plan = tmp_path / "delete.json"
    plan.write_text(json.dumps({"partitions": [{"topic": t, "partition": 0, "offset": 2}], "version": 1}))
    out = tool("kafka-delete-records", "--bootstrap-server", b, "--offset-json-file", plan).stdout
    assert f"partition: {t}-0\tlow_watermark: 2" in out, out
    assert offsets_tool(b, t, -2) == offsets_tool(b, t, -4) == {0: 2, 1: 0}
    assert offsets_tool(b, t, base) == {0: 2, 1: 0}, "by time, the deleted records are not found"
    assert consume("confluent", b, t, 2, partition=0)[0].offset == 2

    out = tool("kafka-log-dirs", "--bootstrap-server", b, "--describe", "--topic-list", t).stdout
    doc = json.loads(out.splitlines()[-1])
    [broker] = doc["brokers"]
    [log_dir] = broker["logDirs"]
    sizes = {p["partition"]: p["size"] for p in log_dir["partitions"]}
    assert broker["broker"] == 1 and log_dir["error"] is None and log_dir["logDir"] == str(tb.data_dir), doc
    assert sizes.keys() == {f"{t}-0", f"{t}-1"} and all(s > 0 for s in sizes.values()), sizes


# -------------------------------------------------------------------------- kafka-metadata-quorum

def quorum_status(b) -> dict:
    s = key_values(tool("kafka-metadata-quorum", "--bootstrap-server", b, "describe", "--status").stdout)
    s["CurrentVoters"] = json.loads(s["CurrentVoters"])
    s["CurrentObservers"] = json.loads(s["CurrentObservers"])
    return s


def quorum_replication(b) -> list[dict]:
    out = tool("kafka-metadata-quorum", "--bootstrap-server", b, "describe", "--replication").stdout
    return table(out, "NodeId")


def test_metadata_quorum_and_cluster_id_of_a_single_node(tb):
    b = tb.bootstrap
    s = quorum_status(b)
    out = tool("kafka-cluster", "cluster-id", "--bootstrap-server", b).stdout
    assert out.strip() == f"Cluster ID: {s['ClusterId']}", (out, s)
    assert s["LeaderId"] == "1" and int(s["LeaderEpoch"]) >= 1 and int(s["HighWatermark"]) > 0, s
    assert s["MaxFollowerLag"] == "0", s
    [voter] = s["CurrentVoters"]
    assert voter["id"] == 1 and len(voter["endpoints"]) == 1, s
    assert re.fullmatch(r"CONTROLLER://127\.0\.0\.1:\d+", voter["endpoints"][0]), s
    assert s["CurrentObservers"] == [], s
    [row] = quorum_replication(b)
    assert (row["NodeId"], row["Lag"], row["Status"]) == ("1", "0", "Leader"), row
    assert int(row["LogEndOffset"]) >= int(s["HighWatermark"]), (row, s)


# ----------------------------------------------------------------------------- the 3-node tools

def controller_port(node) -> int:
    return int(re.search(r"CONTROLLER://[^,]*:(\d+)", node.overrides["listeners"])[1])


@pytest.mark.timeout(300)  # a 3-node Kafka takes a while to start on 2 cores
def test_cluster_tools_quorum_reassignment_and_leader_election(cluster, topic_name, tmp_path):
    """kafka-metadata-quorum on 3 nodes; kafka-reassign-partitions --generate, --execute (with a
    throttle), --verify; kafka-log-dirs after the move; kafka-leader-election (preferred)."""
    nodes = cluster
    b = nodes[0].bootstrap
    t = topic_name

    # --- the quorum, asked of every node
    statuses = [quorum_status(n.bootstrap) for n in nodes]
    assert len({(s["ClusterId"], s["LeaderId"]) for s in statuses}) == 1, statuses
    s = statuses[0]
    assert s["LeaderId"] in {"1", "2", "3"} and int(s["LeaderEpoch"]) >= 1, s
    assert sorted((v["id"], v["endpoints"]) for v in s["CurrentVoters"]) == \
        [(n.node_id, [f"CONTROLLER://127.0.0.1:{controller_port(n)}"]) for n in nodes], s
    assert s["CurrentObservers"] == [], "combined broker+controller nodes are voters, not observers"

    # Kafka's leader appends a record every 500 ms, so a follower's lag is 0 only between fetches.
    def replication_settled():
        rows = quorum_replication(b)
        return len(rows) == 3 and all(r["Lag"] == "0" for r in rows) and rows

    rows = wait_for(replication_settled, "every voter caught up", timeout_s=30, interval_s=0.5)
    assert sorted(r["NodeId"] for r in rows) == ["1", "2", "3"], rows
    assert sorted(r["Status"] for r in rows) == ["Follower", "Follower", "Leader"], rows
    leader = next(r["NodeId"] for r in rows if r["Status"] == "Leader")
    assert leader == quorum_status(b)["LeaderId"], (rows, "the leader --status names")

    # --- a topic placed by hand, with data
    topics(b, "--create", "--topic", t, "--replica-assignment", "1:2,2:3,3:1")
    initial = {0: (1, [1, 2], [1, 2]), 1: (2, [2, 3], [2, 3]), 2: (3, [3, 1], [3, 1])}
    wait_for(lambda: describe_topic(b, t).partitions == initial, "the topic as assigned, replicas in sync")
    records = [rec(f"k{p}-{i}", f"v{p}-{i}", p) for p in range(3) for i in range(10)]
    assert_ok(produce("confluent", b, t, records))

    # --- --generate: the current assignment as it is, and a proposal over the brokers given
    (tmp_path / "topics.json").write_text(json.dumps({"topics": [{"topic": t}], "version": 1}))
    out = tool("kafka-reassign-partitions", "--bootstrap-server", b, "--topics-to-move-json-file",
               tmp_path / "topics.json", "--broker-list", "1,2,3", "--generate").stdout
    current, proposed = (json.loads(l) for l in out.splitlines() if l.startswith("{"))
    assert {p["partition"]: p["replicas"] for p in current["partitions"]} == {p: r for p, (_, r, _) in initial.items()}
    assert sorted(p["partition"] for p in proposed["partitions"]) == [0, 1, 2], proposed
    for p in proposed["partitions"]:
        assert p["topic"] == t and len(set(p["replicas"])) == 2 and set(p["replicas"]) <= {1, 2, 3}, proposed

    # --- --execute: partition 0 moves from {1,2} to {2,3} (3 copies it, 1 drops it); partition 1
    # only changes its replica order, so its preferred leader becomes 3 while 2 still leads.
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": t, "partition": 0, "replicas": [2, 3]}, {"topic": t, "partition": 1, "replicas": [3, 2]}]}))
    out = tool("kafka-reassign-partitions", "--bootstrap-server", b, "--reassignment-json-file", plan,
               "--execute", "--throttle", 50_000_000).stdout
    assert re.search(rf"Successfully started partition reassignments? for ({re.escape(t)}-[01],?){{2}}", out), out
    assert "The inter-broker throttle limit was set to 50000000 B/s" in out, out

    # Configs reach each broker through the metadata log: DescribeConfigs may lag the tool a little.
    def rates(n):
        return {k: v for k, v in broker_dynamic_configs(b, n.node_id).items() if "throttled.rate" in k}

    def throttles_set():
        c = topic_configs(b, t)
        return c["leader.replication.throttled.replicas"] and c["follower.replication.throttled.replicas"] and \
            all(rates(n) == {"leader.replication.throttled.rate": "50000000",
                             "follower.replication.throttled.rate": "50000000"} for n in nodes)

    wait_for(throttles_set, "the throttled replicas on the topic and the rates on every broker")

    def verified():
        out = tool("kafka-reassign-partitions", "--bootstrap-server", b, "--reassignment-json-file", plan,
                   "--verify").stdout
        return all(f"Reassignment of partition {t}-{p} is completed." in out for p in (0, 1)) and out

    out = wait_for(verified, "--verify: both reassignments completed", timeout_s=60, interval_s=0.5)
    assert "Clearing broker-level throttles on brokers 1,2,3" in out, out
    assert f"Clearing topic-level throttles on topic {t}" in out, out

    def throttles_cleared():
        c = topic_configs(b, t)
        return not c["leader.replication.throttled.replicas"] and \
            not c["follower.replication.throttled.replicas"] and not any(rates(n) for n in nodes)

    wait_for(throttles_cleared, "--verify cleared the topic's and the brokers' throttles")

    d = wait_for(lambda: (d := describe_topic(b, t)).partitions[0][1:] == ([2, 3], [2, 3]) and d,
                 "partition 0 on 2 and 3, both in sync")
    assert d.partitions[0][0] in (2, 3), d.partitions
    assert d.partitions[1] == (2, [3, 2], [2, 3]) or d.partitions[1] == (2, [3, 2], [3, 2]), d.partitions
    assert d.partitions[2] == initial[2], d.partitions
    moved = consume("confluent", b, t, 10, partition=0)
    assert [r.content() for r in moved] == [r.content() for r in records if r.partition == 0], moved
    assert watermarks(b, t, (0,))[0] == (0, 10)

    # --- kafka-log-dirs: the copy of partition 0 is on 2 and 3 and gone from 1
    def replicas_on_disk():
        out = tool("kafka-log-dirs", "--bootstrap-server", b, "--describe", "--topic-list", t).stdout
        doc = json.loads(out.splitlines()[-1])
        return {(br["broker"], p["partition"]): p["size"] for br in doc["brokers"] for ld in br["logDirs"]
                for p in ld["partitions"]}

    on_disk = wait_for(lambda: (r := replicas_on_disk()).keys() ==
                       {(2, f"{t}-0"), (3, f"{t}-0"), (2, f"{t}-1"), (3, f"{t}-1"), (3, f"{t}-2"), (1, f"{t}-2")}
                       and r, "log dirs after the move", timeout_s=30, interval_s=0.5)
    assert all(size > 0 for size in on_disk.values()), on_disk

    # --- kafka-leader-election: partition 1's preferred replica (3) takes over
    def elect(*args, rc=0):
        return tool("kafka-leader-election", "--bootstrap-server", b, "--election-type", "preferred", *args, rc=rc)

    out = elect("--topic", t, "--partition", 1).stdout
    assert f"Successfully completed leader election (PREFERRED) for partitions {t}-1" in out, out
    wait_for(lambda: describe_topic(b, t).partitions[1][0] == 3, "3 leads partition 1")
    # Every partition from a file: afterwards each is led by its first replica.
    (tmp_path / "elect.json").write_text(json.dumps({"partitions": [{"topic": t, "partition": p} for p in range(3)]}))
    elect("--path-to-json-file", tmp_path / "elect.json")
    wait_for(lambda: {p: l for p, (l, _, _) in describe_topic(b, t).partitions.items()} == {0: 2, 1: 3, 2: 3},
             "every partition led by its preferred replica")
    out = elect("--topic", t, "--partition", 2).stdout
    assert f"Valid replica already elected for partitions {t}-2" in out, out
    p = elect("--topic", f"{t}-none", "--partition", 0, rc=1)
    assert "UnknownTopicOrPartitionException" in p.stdout + p.stderr, p.stdout + p.stderr
    assert [r.content() for r in consume("confluent", b, t, 10, partition=1)] == \
        [r.content() for r in records if r.partition == 1]


# ------------------------------------------------------------------------------- kafka-transactions

def test_transactions_list_and_describe(tb, new_topic):
    b = tb.bootstrap
    t = new_topic(tb, 2)
    tid = f"open-{t}"
    p = Producer({"bootstrap.servers": b, "transactional.id": tid, "transaction.timeout.ms": 60000})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(5):
        p.produce(t, value=f"open-{i}".encode(), partition=i % 2)
    assert p.flush(15) == 0
    started = time.time() * 1000

    listed = {r["TransactionalId"]: r for r in table(txns(b, "list").stdout, "TransactionalId")}
    assert (listed[tid]["Coordinator"], listed[tid]["TransactionState"]) == ("1", "Ongoing"), listed.get(tid)
    pid = listed[tid]["ProducerId"]
    only = table(txns(b, "list", "--transactional-id-pattern", re.escape(tid)).stdout, "TransactionalId")
    assert [r["TransactionalId"] for r in only] == [tid], only
    long = table(txns(b, "list", "--duration-filter", 3_600_000).stdout, "TransactionalId")
    assert tid not in {r["TransactionalId"] for r in long}, "not open for an hour yet"

    [d] = table(txns(b, "describe", "--transactional-id", tid).stdout, "CoordinatorId")
    assert (d["CoordinatorId"], d["ProducerId"], d["ProducerEpoch"], d["TransactionState"],
            d["TransactionTimeoutMs"]) == ("1", pid, "0", "Ongoing", "60000"), d
    assert set(d["TopicPartitions"].split(",")) == {f"{t}-0", f"{t}-1"}, d
    assert abs(int(d["CurrentTransactionStartTimeMs"]) - started) < 30_000, d
    assert int(d["TransactionDurationMs"]) >= 0, d

    p.commit_transaction(30)
    [d] = table(txns(b, "describe", "--transactional-id", tid).stdout, "CoordinatorId")
    assert (d["ProducerId"], d["TransactionState"]) == (pid, "CompleteCommit"), d
    p.begin_transaction()
    p.produce(t, value=b"aborted", partition=0)
    p.flush(15)
    p.abort_transaction(30)
    [d] = table(txns(b, "describe", "--transactional-id", tid).stdout, "CoordinatorId")
    assert d["TransactionState"] == "CompleteAbort", d
    p = txns(b, "describe", "--transactional-id", f"{tid}-none", rc=1)
    assert f"DescribeTransactions request for transactionalId `{tid}-none` failed because the ID could not be " \
           "found." in p.stderr, p.stderr


def test_transactions_describe_producers_find_hanging_and_abort(tb, new_topic):
    """A transaction left open on a partition, aborted there by the tool, as an operator recovers a
    hanging transaction: read_committed consumers move past it at once."""
    b = tb.bootstrap
    t = new_topic(tb, 1)
    assert_ok(produce("confluent", b, t, [rec("k", "before", 0)]))
    tid = f"hanging-{t}"
    p = Producer({"bootstrap.servers": b, "transactional.id": tid, "transaction.timeout.ms": 60000})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(3):
        p.produce(t, value=f"open-{i}".encode(), partition=0)
    assert p.flush(15) == 0
    [d] = table(txns(b, "describe", "--transactional-id", tid).stdout, "CoordinatorId")
    pid = d["ProducerId"]

    rows = {r["ProducerId"]: r for r in table(txns(b, "describe-producers", "--topic", t, "--partition", 0).stdout,
                                               "ProducerId")}
    assert (rows[pid]["ProducerEpoch"], rows[pid]["LastSequence"], rows[pid]["CurrentTransactionStartOffset"]) == \
        ("0", "2", "1"), rows
    # The coordinator knows the transaction: it is open, not hanging.
    out = txns(b, "find-hanging", "--broker-id", 1, "--max-transaction-timeout", 0).stdout
    assert table(out, "Topic") == [], out

    txns(b, "abort", "--topic", t, "--partition", 0, "--start-offset", 1)
    rows = {r["ProducerId"]: r for r in table(txns(b, "describe-producers", "--topic", t, "--partition", 0).stdout,
                                               "ProducerId")}
    assert rows[pid]["CurrentTransactionStartOffset"] == "None", rows
    # The partition's last stable offset moved past the aborted records: a committed record after
    # them is readable in read_committed, and the aborted ones are not.
    assert_ok(produce("confluent", b, t, [rec("k", "after", 0)]))
    got = consume("confluent", b, t, 2, partition=0, timeout_s=15, **{"isolation.level": "read_committed"})
    assert [r.value for r in got] == [b"before", b"after"], got
    try:
        p.abort_transaction(10)
    except Exception:  # noqa: BLE001 - the producer's own abort after the tool's may be refused
        pass


def test_transactions_abort_by_producer_id(tb, new_topic):
    """kafka-transactions abort with the producer named (--producer-id, --producer-epoch,
    --coordinator-epoch: the form for brokers before 3.0) instead of found by its start offset:
    the tool then asks no DescribeProducers and writes the abort marker itself (WriteTxnMarkers to
    the partition's leader). The coordinator is not told: it still has the transaction Ongoing,
    while read_committed consumers move past the aborted records at once."""
    b = tb.bootstrap
    t = new_topic(tb, 1)
    assert_ok(produce("confluent", b, t, [rec("k", "before", 0)]))
    tid = f"abort-pid-{t}"
    p = Producer({"bootstrap.servers": b, "transactional.id": tid, "transaction.timeout.ms": 60000})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(3):
        p.produce(t, value=f"open-{i}".encode(), partition=0)
    assert p.flush(15) == 0
    [d] = table(txns(b, "describe", "--transactional-id", tid).stdout, "CoordinatorId")
    assert d["TransactionState"] == "Ongoing", d
    # The last stable offset stops at the open transaction's first record.
    assert watermarks(b, t, (0,), "read_committed")[0] == (0, 1)

    # A fresh producer id has no coordinator epoch on the partition yet: 0 is at or below any.
    out = txns(b, "abort", "--topic", t, "--partition", 0, "--producer-id", d["ProducerId"],
               "--producer-epoch", d["ProducerEpoch"], "--coordinator-epoch", 0).stdout
    assert out.strip() == "", out
    # before, the 3 aborted records, the abort marker: everything up to the end is stable.
    wait_for(lambda: watermarks(b, t, (0,), "read_committed")[0] == (0, 5), "the last stable offset at the end")
    [d2] = table(txns(b, "describe", "--transactional-id", tid).stdout, "CoordinatorId")
    assert (d2["ProducerId"], d2["TransactionState"]) == (d["ProducerId"], "Ongoing"), d2
    assert_ok(produce("confluent", b, t, [rec("k", "after", 0)]))
    got = consume("confluent", b, t, 2, partition=0, timeout_s=15, **{"isolation.level": "read_committed"})
    assert [(r.offset, r.value) for r in got] == [(0, b"before"), (5, b"after")], got
    try:
        p.abort_transaction(10)
    except Exception:  # noqa: BLE001 - the producer's own abort after the tool's may be refused
        pass


# ------------------------------------------------------------------------------- internal topics

@fjord_gap("A single Fjord node keeps group offsets and transaction state outside Kafka's internal topics: "
           "after a group commits, kafka-topics --list shows no __consumer_offsets and --describe says it does "
           "not exist (Kafka creates it, 50 partitions, compact, compression.type=producer). In a Fjord "
           "cluster the topic exists, but without compression.type=producer, and its records are not in "
           "Kafka's coordinator format, so kafka-console-consumer's OffsetsMessageFormatter prints nothing")
def test_internal_topics_as_the_tools_show_them(tb, new_topic):
    b = tb.bootstrap
    t = new_topic(tb, 1)
    produce_layout(b, t, {0: 2})
    g = f"internal-{t}"
    tool("kafka-console-consumer", "--bootstrap-server", b, "--topic", t, "--group", g, "--from-beginning",
         "--max-messages", 2)
    listed = topics(b, "--list").stdout.split()
    assert "__consumer_offsets" in listed, listed
    assert "__consumer_offsets" not in topics(b, "--list", "--exclude-internal").stdout.split()
    d = describe_topic(b, "__consumer_offsets")
    assert d.partition_count == 50, d
    assert {"cleanup.policy": "compact", "compression.type": "producer",
            "segment.bytes": "104857600"}.items() <= d.configs.items(), d.configs
    # The commit as Kafka's formatter reads it from the topic: JSON objects, one after the other.
    p = tool("kafka-console-consumer", "--bootstrap-server", b, "--topic", "__consumer_offsets", "--from-beginning",
             "--formatter", "org.apache.kafka.tools.consumer.OffsetsMessageFormatter", "--timeout-ms", 3000)
    decoder, text, at, commits = json.JSONDecoder(), p.stdout, 0, []
    while (at := text.find("{", at)) >= 0:
        doc, at = decoder.raw_decode(text, at)
        commits.append(doc)
    ours = [c["value"]["data"]["offset"] for c in commits
            if c["key"]["type"] == 1 and c["key"]["data"] == {"group": g, "topic": t, "partition": 0}]
    assert ours and ours[-1] == 2, (ours, p.stdout[-2000:], p.stderr[-2000:])


# ------------------------------------------------------------------------------------------- kcat

def test_kcat_produce_consume_metadata_and_offset_queries(tb, new_topic):
    b = tb.bootstrap
    t = new_topic(tb, 2)
    # -P: keys after a tab, headers for every line, a partition per run.
    kcat("-P", "-b", b, "-t", t, "-p", 0, "-K", "\t", "-H", "app=kcat", "-H", "n=1",
         input_bytes="k1\tv1\nk2\tvalue two\n".encode())
    kcat("-P", "-b", b, "-t", t, "-p", 1, "-K", "\t", input_bytes="k3\tv3\n".encode())

    got = kcat_json_lines(kcat("-C", "-b", b, "-t", t, "-J", "-e", "-q", "-o", "beginning").stdout)
    assert sorted((d["partition"], d["offset"], d["key"], d["payload"], tuple(d.get("headers") or ())) for d in got) == [
        (0, 0, "k1", "v1", ("app", "kcat", "n", "1")), (0, 1, "k2", "value two", ("app", "kcat", "n", "1")),
        (1, 0, "k3", "v3", ())], got
    assert all(d["tstype"] == "create" and d["ts"] > 0 and d["broker"] == 1 for d in got), got
    # -o -1: the last record only; -c: a count; -f: kcat's own format.
    last = kcat_json_lines(kcat("-C", "-b", b, "-t", t, "-p", 0, "-o", -1, "-e", "-J", "-q").stdout)
    assert [(d["offset"], d["payload"]) for d in last] == [(1, "value two")], last
    out = kcat("-C", "-b", b, "-t", t, "-p", 0, "-o", "beginning", "-c", 1, "-q", "-f", "%p|%o|%k|%s|%h\n").stdout
    assert out.decode() == "0|0|k1|v1|app=kcat,n=1\n", out

    # -L: metadata, plain and JSON.
    md = json.loads(kcat("-L", "-b", b, "-t", t, "-J").stdout)
    assert md["brokers"] == [{"id": 1, "name": tb.bootstrap}] and md["controllerid"] == 1, md
    [tmd] = md["topics"]
    assert tmd["topic"] == t and [(p["partition"], p["leader"], p["replicas"], p["isrs"]) for p in tmd["partitions"]] \
        == [(p, 1, [{"id": 1}], [{"id": 1}]) for p in range(2)], tmd
    out = kcat("-L", "-b", b, "-t", t).stdout.decode()
    assert f"  broker 1 at {tb.bootstrap} (controller)" in out and f'  topic "{t}" with 2 partitions:' in out, out
    assert "    partition 1, leader 1, replicas: 1, isrs: 1" in out, out

    # -Q: offsets by timestamp, plain and JSON (-1: past the last record).
    t2 = new_topic(tb, 2, suffix="ts")
    base = int(time.time() * 1000) - 600_000
    assert_ok(produce("confluent", b, t2, [rec("a", "a", 0, timestamp=base), rec("b", "b", 0, timestamp=base + 1000),
                                           rec("c", "c", 1, timestamp=base + 500)]))
    out = kcat("-Q", "-b", b, "-t", f"{t2}:0:{base + 1}", "-t", f"{t2}:1:{base + 501}").stdout.decode()
    assert sorted(out.splitlines()) == [f"{t2} [0] offset 1", f"{t2} [1] offset -1"], out
    q = json.loads(kcat("-Q", "-J", "-b", b, "-t", f"{t2}:0:{base}", "-t", f"{t2}:1:{base}").stdout)
    assert {k: (v["partition"], v["offset"]) for k, v in q[t2].items() if k != "topic"} == \
        {"0": (0, 0), "1": (1, 0)}, q


def kcat_member(b, topic, group, protocol="classic") -> Background:
    cmd = [KCAT, "-b", b, "-G", group, topic, "-J", "-q", "-u", "-X", "auto.offset.reset=earliest",
           "-X", "auto.commit.interval.ms=100"]
    # The KIP-848 protocol takes its timings from the broker; librdkafka refuses them from the client.
    cmd += ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"] if protocol == "classic" else \
        ["-X", f"group.protocol={protocol}"]
    return Background(f"kcat -G {group}", cmd)


def test_kcat_balanced_consumer_group(tb, new_topic):
    """Two `kcat -G` members share 4 partitions (librdkafka's classic protocol); the records go to
    their owners only, each once; kafka-consumer-groups sees the members and, after they leave, the
    offsets they committed."""
    b = tb.bootstrap
    t = new_topic(tb, 4)
    g = f"kcat-{t}"
    with kcat_member(b, t, g) as m1, kcat_member(b, t, g) as m2:
        def members():
            rows = table(groups(b, "--describe", "--group", g, "--members").stdout, "GROUP")
            return len(rows) == 2 and all(r["#PARTITIONS"] == "2" for r in rows) and rows

        rows = wait_for(members, "two members with two partitions each", timeout_s=30, interval_s=0.5)
        assert {r["CLIENT-ID"] for r in rows} == {"rdkafka"}, rows
        assigned = {r["CONSUMER-ID"]: r for r in
                    table(groups(b, "--describe", "--group", g, "--members", "--verbose").stdout, "GROUP")}
        owned = [set(map(int, r["CURRENT-ASSIGNMENT"].split(":")[1].split(","))) for r in assigned.values()]
        assert sorted(map(sorted, owned)) == [[0, 1], [2, 3]], assigned  # the range assignor's split

        records = [rec(f"k{p}-{i}", f"v{p}-{i}", p) for p in range(4) for i in range(10)]
        assert_ok(produce("confluent", b, t, records))

        def read(m):
            return [(d["partition"], d["offset"], d["payload"]) for l in list(m.out) if l.startswith("{")
                    for d in [json.loads(l)]]

        wait_for(lambda: len(read(m1)) + len(read(m2)) >= 40, "40 records read between the two", timeout_s=30)
        wait_for(lambda: group_offsets(b, g) == {(t, p): ("10", "10", "0") for p in range(4)},
                 "the members' commits at the end", timeout_s=20, interval_s=0.5)
        for m in (m1, m2):
            assert m.stop(signal.SIGINT) == 0, m.describe()
    r1, r2 = read(m1), read(m2)
    assert sorted(r1 + r2) == sorted((r.partition, i, r.value.decode()) for r in records
                                     for i in [int(r.key.decode().split("-")[1])]), (r1, r2)
    assert {p for p, _, _ in r1} in ({0, 1}, {2, 3}) and {p for p, _, _ in r2} in ({0, 1}, {2, 3}), (r1, r2)
    p = groups(b, "--describe", "--group", g)
    assert f"Consumer group '{g}' has no active members." in p.stderr, p.stderr


def test_kcat_consumer_group_with_the_kip848_protocol(tb, new_topic):
    probe = subprocess.run([KCAT, "-X", "group.protocol=consumer", "-b", tb.bootstrap, "-L", "-m", "5"],
                           capture_output=True, text=True, timeout=30)
    if "No such configuration property" in probe.stderr:
        pytest.skip(f"this kcat's librdkafka has no group.protocol setting (the KIP-848 consumer protocol): "
                    f"{probe.stderr.strip()}")
    b = tb.bootstrap
    t = new_topic(tb, 2)
    g = f"kcat848-{t}"
    assert_ok(produce("confluent", b, t, [rec(f"k{i}", f"v{i}", i % 2) for i in range(10)]))
    with kcat_member(b, t, g, protocol="consumer") as m:
        wait_for(lambda: sum(l.startswith("{") for l in m.out) >= 10, "10 records read", timeout_s=30)
        [s] = table(groups(b, "--describe", "--group", g, "--state").stdout, "GROUP")
        assert s["STATE"] == "Stable" and s["#MEMBERS"] == "1", s
        assert {r["GROUP"]: r["TYPE"] for r in table(groups(b, "--list", "--type").stdout, "GROUP")}[g] == "Consumer"
        assert m.stop(signal.SIGINT) == 0, m.describe()
