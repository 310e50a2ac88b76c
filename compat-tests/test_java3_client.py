"""The Java client of the 3.x line (kafka-clients 3.9, compat-tests/java3/) against the broker.

Much of production still runs 3.x clients, and they speak other protocol versions than 4.x does
(no KIP-848 by default, older Produce/Fetch/OffsetCommit/ListGroups versions picked from
ApiVersions). One program, dev.fjord.compat3.Java3, prints JSON lines; each test checks exactly
what it read back, and what the broker stored, through a second client or the wire:

- an idempotent producer with every codec and headers (null/empty/repeated header values, null
  keys and values, raw bytes): acks, records read back by the 3.9 consumer and by librdkafka, and
  the stored batches (codec, one producer id, sequences);
- a classic group member with commitSync, described while it is in its group, and a restart that
  starts at the committed offsets;
- Admin: create (and TOPIC_ALREADY_EXISTS), describe, configs, list, delete topics;
  listConsumerGroups, describeConsumerGroups, listConsumerGroupOffsets;
- consume-transform-produce with sendOffsetsToTransaction and one aborted transaction: the
  read_committed readers see each input once and nothing of the aborted one;
- the Fetch with which every consumer's close() ends its fetch session, answered at once.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from clientlib import CODECS, Rec, assert_ok, consume, produce
from conftest import group_overrides
from eoslib import Conn, read_confluent
from grouplib import COMMIT_METADATA_SUFFIX
from wire import (API_FETCH, CODEC_IDS, SESSION_EPOCH_FINAL, SESSION_EPOCH_INITIAL, api_versions, fetch_many,
                  pick_version)
from wire import Conn as WireConn

JAVA3_DIR = Path(__file__).resolve().parent / "java3"
JAVA3_CLASSPATH = f"{JAVA3_DIR}/target/classes:{JAVA3_DIR}/target/lib/*"
PARTITIONS = 3


@pytest.fixture(scope="module")
def j3b(start_broker):
    # Without the initial rebalance delay a member's first join answers at once (both brokers
    # default to 3 s), and the members may ask for 6 s sessions.
    return start_broker("java3", **group_overrides(**{"auto.create.topics.enable": "false", "num.partitions": 1}))


def java3(*args, timeout_s: float = 90) -> list[dict]:
    """Runs dev.fjord.compat3.Java3; its JSON lines. A failure (exit != 0) fails the test with the
    program's error line and the client's own log (stderr, warnings and errors)."""
    if not (JAVA3_DIR / "target/classes/dev/fjord/compat3/Java3.class").exists():
        pytest.fail("compat-tests/java3 is not built: run compat-tests/setup.sh")
    # C1 only and serial GC: these JVMs live for seconds, start-up is what counts.
    cmd = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", JAVA3_CLASSPATH,
           "dev.fjord.compat3.Java3", *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    assert p.returncode == 0, (f"Java3 {args[0]} exited {p.returncode}: {lines[-30:]}\n"
                               f"stderr:\n{p.stderr[-4000:]}")
    return lines


def of(lines: list[dict], ev: str) -> list[dict]:
    return [line for line in lines if line["ev"] == ev]


def unhex(s: str | None) -> bytes | None:
    return None if s is None else bytes.fromhex(s)


def as_rec(line: dict) -> Rec:
    return Rec(unhex(line["k"]), unhex(line["v"]), tuple((k, unhex(v)) for k, v in line["h"]),
               line["p"], line["ts"], line["o"])


def expected_record(codec: str, i: int) -> Rec:
    """Java3.record(): the same record, built independently."""
    key = None if i % 4 == 3 else f"k-{i}".encode()
    value = None
    if i % 5 != 4:
        value = f"{codec} #{i} blåbær→✓ {'x' * (i * 7 % 50)}".encode() + (b"\x00\xff\x10" if i % 3 == 0 else b"")
    headers: tuple = ()
    if i % 8 != 7:
        headers = (("h-index", str(i).encode()), ("h-codec", codec.encode()), ("h-empty", b""),
                   ("h-dup", b"first"), ("h-dup", b"second"))
        if i % 6 == 0:
            headers += (("h-null", None),)
    return Rec(key, value, headers, i % PARTITIONS)


def test_idempotent_producer_every_codec(j3b, new_topic, topic_name):
    """Per codec an idempotent 3.9 producer (acks=all, 5 in flight, small batches) sends 40 records
    with headers to 3 partitions. Its acks give offsets 0, 1, 2, ... per partition in send order;
    the 3.9 consumer and librdkafka read exactly those records back; the broker stored them in
    batches of that codec, all from one producer id, epoch 0, each batch's base sequence equal to
    its base offset (a fresh producer on a fresh partition)."""
    n = 40
    prefix = topic_name  # new_topic names them <topic_name>-<suffix>
    for codec in CODECS:
        new_topic(j3b, partitions=PARTITIONS, suffix=codec)
    lines = java3("produce-read", "--bootstrap", j3b.bootstrap, "--topic-prefix", prefix,
                  "--codecs", ",".join(CODECS), "--partitions", PARTITIONS, "--count", n)

    for codec in CODECS:
        topic = f"{prefix}-{codec}"
        expected = [expected_record(codec, i) for i in range(n)]
        acks = sorted((l for l in of(lines, "ack") if l["codec"] == codec), key=lambda l: l["i"])
        assert [l["i"] for l in acks] == list(range(n)), acks
        layout: dict[int, list[tuple[int, tuple]]] = defaultdict(list)
        for rec, ack in zip(expected, acks):
            assert ack["p"] == rec.partition, (codec, ack)
            assert ack["o"] == len(layout[rec.partition]), f"{codec}: ack {ack}, expected the next offset of its partition"
            layout[rec.partition].append((ack["o"], rec.content()))

        got = [as_rec(l) for l in of(lines, "rec") if l["codec"] == codec]
        read = defaultdict(list)
        for r in got:
            read[r.partition].append((r.offset, r.content()))
        assert dict(read) == dict(layout), f"{codec}: the 3.9 consumer read {got}"

        # librdkafka reads the same records (null header values included) at the same offsets.
        other = consume("confluent", j3b.bootstrap, topic, n)
        assert sorted((r.partition, r.offset, r.content()) for r in other) == \
            sorted((p, o, c) for p, rows in layout.items() for o, c in rows), codec
        assert {(r.partition, r.offset): r.timestamp for r in other} == \
            {(r.partition, r.offset): r.timestamp for r in got}, f"{codec}: timestamps differ"

        pids = set()
        with Conn(j3b.bootstrap) as conn:
            for p in range(PARTITIONS):
                batches = conn.fetch(topic, p).batches
                assert sum(b.count for b in batches) == len(layout[p]), (codec, p, batches)
                for b in batches:
                    assert b.attributes & 0x7 == CODEC_IDS[codec], f"{codec} partition {p}: stored {b}"
                    assert b.producer_id >= 0 and b.producer_epoch == 0, f"{codec} partition {p}: not idempotent: {b}"
                    assert b.base_sequence == b.base_offset, f"{codec} partition {p}: sequence gap or reuse: {b}"
                    pids.add(b.producer_id)
        assert len(pids) == 1, f"{codec}: several producer ids {pids}"


def test_group_commit_sync_and_restart(j3b, new_topic):
    """A 3.9 member of a classic group processes 13 of 30 records, committing exactly the
    processed ones (offset + 1, with metadata) after each poll; while still in the group its
    describeConsumerGroups shows it Stable with all three partitions. It leaves; a new member (a
    new process) starts each partition at the committed offset and reads exactly the other 17."""
    topic = new_topic(j3b, partitions=PARTITIONS)
    group = f"java3-group-{uuid.uuid4().hex[:8]}"
    records = [Rec(f"k-{i}".encode(), f"v-{i} ø".encode(), (("n", str(i).encode()),), i % PARTITIONS) for i in range(30)]
    assert_ok(produce("confluent", j3b.bootstrap, topic, records))
    expected = {p: [r.content() for r in records if r.partition == p] for p in range(PARTITIONS)}

    first = java3("group", "--bootstrap", j3b.bootstrap, "--topic", topic, "--group", group, "--max", 13,
                  "--client-id", "java3-first", "--describe")
    assert of(first, "assigned") == [{"ev": "assigned", "partitions": [{"p": p, "position": 0} for p in range(PARTITIONS)]}]
    read1 = [as_rec(l) for l in of(first, "rec")]
    assert len(read1) == 13
    done = defaultdict(int)
    for r in read1:
        assert r.offset == done[r.partition], f"out of order or a gap: {r}"
        assert r.content() == expected[r.partition][r.offset]
        done[r.partition] += 1
    # Each commit names the partitions of that poll, at the record after the last one processed.
    commits = of(first, "commit")
    final = {}
    for c in commits:
        for o in c["offsets"]:
            assert o["topic"] == topic and o["metadata"] == "java3", c
            assert o["o"] > final.get(o["p"], 0), f"commit went back or repeated: {commits}"
            final[o["p"]] = o["o"]
    assert final == dict(done)
    described = of(first, "described")
    assert len(described) == 1, first
    d = described[0]
    assert (d["group"], d["state"], d["type"], d["simple"], d["assignor"]) == (group, "STABLE", "CLASSIC", False, "range"), d
    assert d["members"] == [{"client_id": "java3-first", "has_member_id": True, "assignment": list(range(PARTITIONS))}], d
    assert first[-1]["ev"] == "closed"

    second = java3("group", "--bootstrap", j3b.bootstrap, "--topic", topic, "--group", group, "--max", 17,
                   "--client-id", "java3-second")
    assert of(second, "assigned") == [{"ev": "assigned", "partitions": [
        {"p": p, "position": done[p]} for p in range(PARTITIONS)]}], "the restart did not resume at the committed offsets"
    read2 = [as_rec(l) for l in of(second, "rec")]
    at = dict(done)
    for r in read2:
        assert r.offset == at[r.partition], f"not resumed at the committed offset, or a gap: {r}"
        assert r.content() == expected[r.partition][r.offset]
        at[r.partition] += 1
    assert at == {p: len(expected[p]) for p in range(PARTITIONS)}, "the two runs together did not read every record once"
    last = {}
    for c in of(second, "commit"):
        last.update({o["p"]: o["o"] for o in c["offsets"]})
    assert {**final, **last} == at


def test_admin_topics_and_groups(j3b, new_topic, topic_name):
    """The 3.9 Admin client: createTopics (4 partitions, two configs; again: TopicExists),
    describeTopics, describeConfigs, listTopics, deleteTopics (then unknown); for a classic group
    that librdkafka left Empty with committed offsets: listConsumerGroups, describeConsumerGroups,
    listConsumerGroupOffsets with the committed offsets and metadata."""
    from confluent_kafka import Consumer, TopicPartition

    src = new_topic(j3b, partitions=2, suffix="src")
    assert_ok(produce("confluent", j3b.bootstrap, src, [Rec(b"k", b"v", (), p) for p in (0, 1, 1)]))
    group = f"java3-admin-{uuid.uuid4().hex[:8]}"
    c = Consumer({"bootstrap.servers": j3b.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    try:
        c.subscribe([src])
        seen = 0
        while seen < 3:
            m = c.poll(1)
            if m is not None and not m.error():
                seen += 1
        c.commit(offsets=[TopicPartition(src, 0, 1, "m0"), TopicPartition(src, 1, 2, "m1")], asynchronous=False)
    finally:
        c.close()

    topic = f"{topic_name}-admin"
    lines = java3("admin", "--bootstrap", j3b.bootstrap, "--topic", topic, "--group", group)
    created, = of(lines, "created")
    assert created["partitions"] == 4 and created["replication_factor"] == 1, created
    assert created["topic_id"] != "AAAAAAAAAAAAAAAAAAAAAA", created
    assert of(lines, "create-again") == [{"ev": "create-again", "error": "TopicExistsException"}], lines
    td, = of(lines, "described-topic")
    assert (td["name"], td["topic_id"], td["internal"]) == (topic, created["topic_id"], False), td
    assert td["partitions"] == [{"p": p, "leader": 1, "replicas": 1, "isr": 1} for p in range(4)], td
    cfg, = of(lines, "topic-configs")
    assert cfg["configs"] == {"cleanup.policy": {"value": "compact", "source": "DYNAMIC_TOPIC_CONFIG"},
                              "retention.ms": {"value": "3600000", "source": "DYNAMIC_TOPIC_CONFIG"}}, cfg
    assert of(lines, "listed-topics") == [{"ev": "listed-topics", "present": True}]

    assert of(lines, "group-listing") == [{"ev": "group-listing", "group": group, "simple": False,
                                           "state": "EMPTY", "type": "CLASSIC"}], lines
    g, = of(lines, "group")
    assert (g["group"], g["state"], g["type"], g["simple"], g["members"]) == (group, "EMPTY", "CLASSIC", False, []), g
    assert g["coordinator"] == 1, g
    offsets, = of(lines, "group-offsets")
    # confluent-kafka-python commits metadata with its C string's NUL (FINDINGS.md), which the
    # broker keeps as sent.
    nul = COMMIT_METADATA_SUFFIX["confluent"]
    assert offsets["offsets"] == [{"topic": src, "p": 0, "o": 1, "metadata": "m0" + nul},
                                  {"topic": src, "p": 1, "o": 2, "metadata": "m1" + nul}], offsets

    assert of(lines, "deleted") == [{"ev": "deleted"}]
    assert of(lines, "describe-deleted") == [{"ev": "describe-deleted", "error": "UnknownTopicOrPartitionException"}], lines


def test_transactions_send_offsets_read_committed(j3b, new_topic):
    """Consume-transform-produce with the 3.9 client: 12 inputs over 2 partitions, 4 per
    transaction, the group's offsets sent with sendOffsetsToTransaction(offsets, groupMetadata);
    the second transaction is aborted and its inputs processed again after a seek back. The 3.9
    read_committed consumer and librdkafka's see each input's output exactly once, from the
    transaction that committed it, in input order per partition, and nothing the aborted one
    wrote; read_uncommitted sees those too; the group's committed offsets are the input's end."""
    inp = new_topic(j3b, partitions=2, suffix="in")
    out = new_topic(j3b, partitions=2, suffix="out")
    group = f"java3-ctp-{uuid.uuid4().hex[:8]}"
    inputs = [Rec(f"k-{i}".encode(), f"in-{i}".encode(), (), i % 2) for i in range(12)]
    assert_ok(produce("confluent", j3b.bootstrap, inp, inputs))
    in_order = {p: [r.value.decode() for r in inputs if r.partition == p] for p in (0, 1)}

    lines = java3("txn", "--bootstrap", j3b.bootstrap, "--input", inp, "--output", out, "--group", group,
                  "--txn-id", f"java3-txn-{uuid.uuid4().hex[:8]}", "--count", 12, "--per-txn", 4, "--abort", 1)
    assert lines[0]["ev"] == "ready", lines
    txns = [l for l in lines if l["ev"] in ("committed", "aborted")]
    assert [(t["ev"], t["t"]) for t in txns] == [("committed", 0), ("aborted", 1), ("committed", 2), ("committed", 3)], txns
    assert len(txns[1]["inputs"]) == 4
    committed_by = {}
    for t in txns:
        if t["ev"] == "committed":
            for i in t["inputs"]:
                assert i["v"] not in committed_by, f"{i} committed twice"
                committed_by[i["v"]] = t["t"]
    assert sorted(committed_by) == sorted(r.value.decode() for r in inputs)

    want = {p: [f"out:{v}:t{committed_by[v]}" for v in in_order[p]] for p in (0, 1)}
    rc = [l for l in of(lines, "out") if l["isolation"] == "read_committed"]
    got = {p: [unhex(l["v"]).decode() for l in rc if l["p"] == p] for p in (0, 1)}
    assert got == want, "the 3.9 read_committed consumer"
    # The output keeps the input's key: in-<i> came with k-<i>.
    assert [unhex(l["k"]).decode() for l in rc] == \
        ["k-" + unhex(l["v"]).decode().split(":")[1].removeprefix("in-") for l in rc], rc

    aborted = sorted(f"out:{i['v']}:t1" for i in txns[1]["inputs"])
    ru = [unhex(l["v"]).decode() for l in of(lines, "out") if l["isolation"] == "read_uncommitted"]
    assert sorted(ru) == sorted([v for p in (0, 1) for v in want[p]] + aborted), \
        "read_uncommitted: every committed output and the aborted transaction's"

    theirs = read_confluent(j3b.bootstrap, out, "read_committed")
    assert {p: [r.value for r in theirs if r.partition == p] for p in (0, 1)} == want, "librdkafka read_committed"

    offsets, = of(lines, "group-offsets")
    assert [(o["p"], o["o"]) for o in offsets["offsets"]] == [(0, 6), (1, 6)], offsets
    # The abort really reached the log: an abort marker in a partition the aborted transaction wrote.
    with Conn(j3b.bootstrap) as conn:
        markers = [b.control_type for p in {i["p"] for i in txns[1]["inputs"]} for b in conn.fetch(out, p).batches if b.control]
    assert 0 in markers and 1 in markers, markers


def test_consumer_close_fetch_answered_at_once(j3b, new_topic):
    """KafkaConsumer.close() (3.x and 4.x alike) ends its fetch session with one more Fetch: the
    session's id, epoch -1 (FINAL), no partitions, the session's partitions forgotten, and the
    consumer's fetch.max.wait.ms and fetch.min.bytes; close() waits for its answer. Kafka answers a
    fetch that asks for no partition at once (ReplicaManager.fetchMessages: `fetchInfos.isEmpty`),
    so it cannot hold every consumer's close for fetch.max.wait.ms. Measured with the 3.9 consumer
    of test_idempotent_producer_every_codec: close() after reading to the end takes ~0.5 s on
    Kafka 4.4 (its prefetch, parked in the broker) and ~1.0 s where this fetch is held as well."""
    topic = new_topic(j3b, partitions=1)
    assert_ok(produce("confluent", j3b.bootstrap, topic, [Rec(b"k", b"v", (), 0)]))
    with WireConn(j3b.bootstrap) as c:
        version = pick_version(api_versions(c).ranges, API_FETCH, range(7, 13))
        opened = fetch_many(c, version, [(topic, 0, 0)], max_wait_ms=0, min_bytes=0,
                            session_id=0, session_epoch=SESSION_EPOCH_INITIAL)
        assert opened.error_code == 0 and opened.session_id != 0, opened
        started = time.monotonic()
        closed = fetch_many(c, version, [], max_wait_ms=3000, min_bytes=1, session_id=opened.session_id,
                            session_epoch=SESSION_EPOCH_FINAL, forget=[(topic, 0)])
        took = time.monotonic() - started
    assert closed.error_code == 0 and closed.partitions == {}, closed
    assert took < 1.0, f"the close-session Fetch (no partitions, max_wait_ms=3000) was held {took:.2f}s"
