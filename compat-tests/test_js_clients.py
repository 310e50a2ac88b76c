"""The JavaScript client families over a real socket: KafkaJS and @confluentinc/kafka-javascript.

Each client runs in Node as a subprocess (`js/kafkajs_cli.js`, `js/confluent_cli.js`: one JSON
object in on stdin, JSON lines out) and every test checks what came back: exact keys, values and
headers, per-partition order and offsets, timestamps, committed offsets (read with another
client), the codec and producer id of the batches as stored (a raw Fetch).

KafkaJS 2.2.4 (pure JavaScript; protocol versions from 2019: Produce v7, Fetch v11, JoinGroup v5,
OffsetCommit v5, transactions v1): an idempotent acks=all producer with every codec (snappy and
lz4 through the kafkajs-snappy and kafkajs-lz4 plugins, zstd through a codec over zstd-napi, as
@kafkajs/zstd does not build: see js/kafkajs_cli.js), group consumers (eachMessage with auto
commit, eachBatch with its own commits and metadata) and a new member resuming from the commits,
the admin client (topics, configs, offsets, groups), headers both ways, and transactions whose
sendOffsets and aborts a read_committed consumer must respect.

@confluentinc/kafka-javascript 1.10.1 (librdkafka 2.15.1 built from the package's source by
`npm ci`, see setup.sh) through its KafkaJS-compatible API: an idempotent producer per codec, a
group consumer with explicit commits, headers both ways, admin create/describe/delete of topics
and groups.

The clients' own bugs met here (null and empty header values) are documented where they are
worked around: test_kafkajs_headers_both_ways, test_confluent_js_headers_both_ways.

Skipped when node or compat-tests/js/node_modules is missing (compat-tests/setup.sh runs npm ci).
FJORD_JS_DEBUG=1 turns the clients' logs (on stderr, shown when a read falls short) up to debug.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from clientlib import Ack, ClientError, Rec, consume, expected_layout, layout_mismatch, produce, sample_records
from conftest import group_overrides, wait_for
from eoslib import Conn
from grouplib import committed_offsets
from wire import CODEC_IDS

JS_DIR = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")
CONFLUENT_JS_ADDON = (JS_DIR / "node_modules" / "@confluentinc" / "kafka-javascript" / "build" / "Release"
                      / "confluent-kafka-javascript.node")
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
#: How long one client run may take; the scripts give up on reading after their own timeoutMs.
JS_TIMEOUT_S = 60


def _why_no_js() -> str | None:
    if NODE is None:
        return "node is not installed (the JavaScript tier needs Node.js >= 18 and npm)"
    if not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        return "compat-tests/js/node_modules is missing: run compat-tests/setup.sh (npm ci)"
    return None


pytestmark = pytest.mark.skipif(_why_no_js() is not None, reason=_why_no_js() or "")

needs_confluent_js = pytest.mark.skipif(
    not CONFLUENT_JS_ADDON.exists(),
    reason="@confluentinc/kafka-javascript's native addon was not built (npm ci in compat-tests/js failed "
           "to compile librdkafka: see compat-tests/setup.sh)")


@pytest.fixture(scope="module")
def jb(start_broker):
    """A broker for this module: no initial rebalance delay and short sessions allowed, so the
    clients' group joins take milliseconds."""
    return start_broker("js-clients", **group_overrides(**{"auto.create.topics.enable": "false", "num.partitions": 1}))


# ------------------------------------------------------------------------------------- plumbing

class Lines(list):
    """A client run's JSON lines, with its stderr (the client's own log) for failure messages."""

    stderr = ""


def js(script: str, command: str, timeout_s: float = JS_TIMEOUT_S, **payload) -> Lines:
    """Runs `node js/<script> <command>` with `payload` on stdin; its JSON lines. A run that
    ends with an error (exit 2 and an {"error": ...} line) raises ClientError."""
    p = subprocess.run([NODE, str(JS_DIR / script), command], input=json.dumps(payload), capture_output=True,
                       text=True, timeout=timeout_s, cwd=JS_DIR,
                       env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"})
    lines = Lines(json.loads(line) for line in p.stdout.splitlines() if line.strip())
    lines.stderr = p.stderr
    if p.returncode != 0:
        raise ClientError(f"{script} {command} exited {p.returncode}: {lines[-3:]}\nstderr: {p.stderr[-3000:]}")
    return lines


def kafkajs(command: str, **payload) -> Lines:
    return js("kafkajs_cli.js", command, **payload)


def confluent_js(command: str, **payload) -> Lines:
    return js("confluent_cli.js", command, **payload)


def _hex(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


def _unhex(s: str | None) -> bytes | None:
    return None if s is None else bytes.fromhex(s)


def _json_record(r: Rec) -> dict:
    return {"key": _hex(r.key), "value": _hex(r.value), "headers": [[k, _hex(v)] for k, v in r.headers],
            "partition": r.partition, "timestamp": r.timestamp}


def _records_read(lines: list[dict]) -> list[Rec]:
    return [Rec(_unhex(r["key"]), _unhex(r["value"]), tuple((k, _unhex(v)) for k, v in r["headers"]),
                r["partition"], r["timestamp"], r["offset"])
            for r in (line["record"] for line in lines if "record" in line)]


def _one(lines: list[dict], key: str):
    found = [line[key] for line in lines if key in line]
    assert len(found) == 1, f"expected one {key!r} line, got {found}: {lines[-5:]}"
    return found[0]


def _ops(lines: list[dict]) -> list[tuple[str, object]]:
    """The admin results in order: (op, result), or (op, {"error": ...}) for a failed one."""
    return [(line["op"], line.get("result", {"error": line.get("error")})) for line in lines if "op" in line]


def _read_all(lines: Lines, count: int) -> list[Rec]:
    done = _one(lines, "done")
    assert not done["timedOut"] and done["count"] == count, \
        f"read {done['count']} of {count} records: {lines[-5:]}\nclient log: {lines.stderr[-3000:]}"
    return _records_read(lines)


def _now_ms() -> int:
    return int(time.time() * 1000)


def java_partition(key: bytes, partitions: int) -> int:
    """Where the Java client's default partitioner puts a keyed record (murmur2, sign bit off)."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


#: An explicit timestamp some records carry; it must come back as sent.
STAMP_MS = 1_600_000_000_123


def js_records(tag: str, partitions: int = 3) -> list[Rec]:
    """sample_records (keys, null keys, null and non-ASCII values, headers: empty, repeated names
    kept together, since the KafkaJS API holds headers in an object) on explicit partitions,
    then keyed records without a partition (the client's partitioner places them) and one
    binary record with a binary header and an explicit timestamp."""
    recs = list(sample_records(tag, partitions=partitions, per_partition=4))
    recs += [Rec(f"routed-{i}".encode(), f"{tag} routed {i}".encode(), (("h-routed", str(i).encode()),))
             for i in range(6)]
    recs.append(Rec(b"stamped", bytes(range(256)), (("h-bin", bytes(range(255, -1, -1))),), 1, STAMP_MS))
    return recs


def placed(records: list[Rec], partitions: int) -> list[Rec]:
    """`records` with the partition the Java client's partitioner gives the keyed ones without."""
    return [r if r.partition is not None else
            Rec(r.key, r.value, r.headers, java_partition(r.key, partitions), r.timestamp) for r in records]


def layout_of(records: list[Rec]) -> dict[int, list[tuple[int, tuple]]]:
    """{partition: [(offset, content)]} of records written in this order into a fresh topic."""
    return expected_layout(records, [Ack(r.partition) for r in records])


def ends(layout: dict[int, list]) -> dict[int, int]:
    return {p: len(rows) for p, rows in layout.items() if rows}


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets, as kafka-python's admin (OffsetFetch) reads them."""
    return {p: o for p, (o, _) in committed_offsets(bootstrap, group, topic).items()}


def stored_batches(bootstrap: str, topic: str, partitions: int) -> dict[int, list]:
    """Each partition's record batches as the broker serves them (raw Fetch, read_uncommitted)."""
    with Conn(bootstrap) as c:
        return {p: c.fetch(topic, p).batches for p in range(partitions)}


def assert_timestamps(got: list[Rec], records: list[Rec], before_ms: int, after_ms: int):
    """Explicit timestamps came back as sent; the others are the producer's clock at send time."""
    sent = {(r.key, r.value): r.timestamp for r in records}
    for r in got:
        want = sent[(r.key, r.value)]
        if want is not None:
            assert r.timestamp == want, f"{r}: explicit timestamp {want} read back as {r.timestamp}"
        else:
            assert before_ms - 1000 <= r.timestamp <= after_ms + 1000, f"{r}: timestamp not from the send"


# ====================================================================================== KafkaJS

@pytest.mark.parametrize("codec", CODECS)
def test_kafkajs_round_trip(jb, new_topic, codec):
    """An idempotent acks=all KafkaJS producer, one send() over three partitions: one batch per
    partition in the codec, one producer id, sequence 0; a KafkaJS group member reads exactly the
    records back (eachMessage, auto commit) and its commits reach the end; confluent-kafka
    (librdkafka) reads the same records at the same offsets with the same timestamps."""
    topic = new_topic(jb, partitions=3)
    group = f"{topic}-g"
    records = js_records(f"kafkajs/{codec}")
    expected = layout_of(placed(records, 3))

    before = _now_ms()
    out = kafkajs("produce", bootstrap=jb.bootstrap, topic=topic, codec=codec, idempotent=True, acks=-1,
                  records=[_json_record(r) for r in records])
    after = _now_ms()
    sent = _one(out, "sent")
    assert sorted((m["partition"], m["errorCode"], m["baseOffset"]) for m in sent) == [(p, 0, 0) for p in range(3)], sent

    batches = stored_batches(jb.bootstrap, topic, 3)
    pids = set()
    for p, bs in batches.items():
        assert [(b.count, b.attributes & 0x7, b.base_sequence) for b in bs] == [(len(expected[p]), CODEC_IDS[codec], 0)], \
            f"partition {p}: expected one {codec} batch of {len(expected[p])} records at sequence 0, stored {bs}"
        pids |= {b.producer_id for b in bs}
    assert len(pids) == 1 and min(pids) >= 0, f"one idempotent producer id expected, batches carry {pids}"

    got = _read_all(kafkajs("consume", bootstrap=jb.bootstrap, topic=topic, group=group, count=len(records),
                            commit="auto"), len(records))
    assert layout_mismatch(got, expected) is None, layout_mismatch(got, expected)
    assert_timestamps(got, records, before, after)
    assert committed(jb.bootstrap, group, topic) == ends(expected)

    other = consume("confluent", jb.bootstrap, topic, len(records))
    assert layout_mismatch(other, expected) is None, f"confluent-kafka: {layout_mismatch(other, expected)}"
    assert {(r.partition, r.offset): r.timestamp for r in other} == {(r.partition, r.offset): r.timestamp for r in got}


@pytest.mark.parametrize("codec", CODECS)
def test_kafkajs_reads_librdkafka_batches(jb, new_topic, codec):
    """KafkaJS decodes what another client (confluent-kafka) wrote in each codec: the batches
    are stored in that codec, and a group member reads every record, in order, at its offset."""
    topic = new_topic(jb, partitions=3)
    records = sample_records(f"confluent/{codec}", partitions=3, per_partition=5)
    acks = produce("confluent", jb.bootstrap, topic, records, codec=codec, acks="all")
    expected = expected_layout(records, acks)
    stored = {b.attributes & 0x7 for bs in stored_batches(jb.bootstrap, topic, 3).values() for b in bs}
    assert stored == {CODEC_IDS[codec]}, f"stored codecs {stored}, written with {codec}"
    got = _read_all(kafkajs("consume", bootstrap=jb.bootstrap, topic=topic, group=f"{topic}-g",
                            count=len(records), commit="none"), len(records))
    assert layout_mismatch(got, expected) is None, layout_mismatch(got, expected)


def test_kafkajs_each_batch_commits_and_a_new_member_resumes(jb, new_topic):
    """eachBatch with its own commits (offset and metadata, through commitOffsetsIfNecessary):
    the group's offsets (read with kafka-python) are the ends with that metadata; a new member
    of the group (eachMessage, auto commit) reads only what was produced after, from there."""
    topic = new_topic(jb, partitions=2)
    group = f"{topic}-g"
    first = [Rec(f"k{i}".encode(), f"first {i}".encode(), (("n", str(i).encode()),), i % 2) for i in range(10)]
    second = [Rec(f"k{i}".encode(), f"second {i}".encode(), (), i % 2) for i in range(6)]
    kafkajs("produce", bootstrap=jb.bootstrap, topic=topic, idempotent=True, records=[_json_record(r) for r in first])

    lines = kafkajs("consume", bootstrap=jb.bootstrap, topic=topic, group=group, count=10, mode="eachBatch",
                    commit="manual", commitMetadata="kafkajs eachBatch ✓")
    expected = layout_of(first)
    got = _read_all(lines, 10)
    assert layout_mismatch(got, expected) is None, layout_mismatch(got, expected)
    assert committed_offsets(jb.bootstrap, group, topic) == {0: (5, "kafkajs eachBatch ✓"), 1: (5, "kafkajs eachBatch ✓")}

    kafkajs("produce", bootstrap=jb.bootstrap, topic=topic, idempotent=True, records=[_json_record(r) for r in second])
    got = _read_all(kafkajs("consume", bootstrap=jb.bootstrap, topic=topic, group=group, count=6, commit="auto"), 6)
    resumed = {p: [(o + 5, c) for o, c in rows] for p, rows in layout_of(second).items()}
    assert layout_mismatch(got, resumed) is None, f"the new member did not resume at the commits: {layout_mismatch(got, resumed)}"
    assert committed(jb.bootstrap, group, topic) == {0: 8, 1: 8}


def test_kafkajs_admin_topics_configs_offsets_groups(jb, topic_name):
    """KafkaJS's admin client: createTopics with configs (a second time: false), metadata, the
    configs as DescribeConfigs reads them (and confluent-kafka agrees), ListOffsets; while a
    member is in the group: listGroups, describeGroups (Stable, its assignment and subscription),
    fetchOffsets; after it left: Empty, deleteGroups, deleteTopics."""
    from adminlib import make_admin

    topic, group = topic_name, f"{topic_name}-g"
    ops = _ops(kafkajs("admin", bootstrap=jb.bootstrap, ops=[
        {"op": "createTopics", "topics": [{"topic": topic, "partitions": 3,
                                           "configs": {"retention.ms": 3600000, "cleanup.policy": "compact"}}]},
        {"op": "createTopics", "topics": [{"topic": topic, "partitions": 3}]},
        {"op": "fetchTopicMetadata", "topics": [topic]},
        {"op": "listTopics"},
        {"op": "describeConfigs", "topic": topic, "names": ["retention.ms", "cleanup.policy", "max.message.bytes"]},
    ]))
    assert [op for op, _ in ops] == ["createTopics", "createTopics", "fetchTopicMetadata", "listTopics", "describeConfigs"]
    assert ops[0][1] is True and ops[1][1] is False, ops[:2]
    assert ops[2][1] == [{"name": topic, "partitions": [
        {"partition": p, "errorCode": 0, "leader": 1, "replicas": [1], "isr": [1]} for p in range(3)]}], ops[2]
    assert topic in ops[3][1]
    assert ops[4][1] == {"retention.ms": "3600000", "cleanup.policy": "compact", "max.message.bytes": "1048588"}, ops[4]
    confluent_view = make_admin("confluent", jb.bootstrap).describe_configs(topic)
    assert (confluent_view["retention.ms"].value, confluent_view["cleanup.policy"].value) == ("3600000", "compact")

    records = [Rec(f"k{i}".encode(), f"v{i}".encode(), (), i % 3) for i in range(9)]
    kafkajs("produce", bootstrap=jb.bootstrap, topic=topic, idempotent=True, records=[_json_record(r) for r in records])
    lines = kafkajs("consume", bootstrap=jb.bootstrap, topic=topic, group=group, count=9, commit="auto", whileMember=[
        {"op": "listGroups"},
        {"op": "describeGroups", "groups": [group]},
        {"op": "fetchOffsets", "group": group, "topics": [topic]},
        {"op": "fetchTopicOffsets", "topic": topic},
    ])
    assert layout_mismatch(_read_all(lines, 9), layout_of(records)) is None
    (joined,) = [line["joined"] for line in lines if "joined" in line]
    assert joined["assignment"] == {topic: [0, 1, 2]} and joined["isLeader"], joined
    live = dict(_ops(lines))
    assert {"groupId": group, "protocolType": "consumer"} in live["listGroups"], live["listGroups"]
    (described,) = live["describeGroups"]
    assert (described["groupId"], described["errorCode"], described["state"], described["protocolType"],
            described["protocol"]) == (group, 0, "Stable", "consumer", "RoundRobinAssigner"), described
    # The assignor lists the partitions in Metadata's order, which Kafka does not fix (4.1: [1, 2, 0]).
    assert [(m["clientId"], {t: sorted(ps) for t, ps in m["assignment"].items()}, m["subscription"])
            for m in described["members"]] == [("fjord-compat-kafkajs", {topic: [0, 1, 2]}, [topic])], \
        described["members"]
    assert live["fetchOffsets"] == [{"topic": topic, "partitions": [
        {"partition": p, "offset": 3, "metadata": None} for p in range(3)]}], live["fetchOffsets"]
    assert live["fetchTopicOffsets"] == [{"partition": p, "low": 0, "high": 3} for p in range(3)]

    ops = _ops(kafkajs("admin", bootstrap=jb.bootstrap, ops=[
        {"op": "describeGroups", "groups": [group]},
        {"op": "fetchOffsets", "group": group, "topics": [topic]},
        {"op": "deleteGroups", "groups": [group]},
        {"op": "listGroups"},
        {"op": "deleteTopics", "topics": [topic]},
    ]))
    (after,) = ops[0][1]
    assert (after["state"], after["members"]) == ("Empty", []), after
    assert [p["offset"] for p in ops[1][1][0]["partitions"]] == [3, 3, 3], ops[1]
    assert ops[2][1] == [{"groupId": group, "errorCode": 0}], ops[2]
    assert group not in [g["groupId"] for g in ops[3][1]], ops[3]
    assert ops[4] == ("deleteTopics", None), ops[4]
    wait_for(lambda: topic not in _ops(kafkajs("admin", bootstrap=jb.bootstrap, ops=[{"op": "listTopics"}]))[0][1],
             f"{topic} gone from KafkaJS's listTopics")
    assert topic not in make_admin("confluent", jb.bootstrap).list_topics()


def test_kafkajs_admin_offsets_records_partitions(jb, topic_name):
    """More of KafkaJS's admin client, and its refusals: describeCluster; a topic with a bad
    config value (INVALID_CONFIG); offsets by timestamp (first at or after it, the end past the
    last); setOffsets on an empty group, from which a member then reads exactly (KafkaJS sets
    them by joining the group with a paused consumer, which takes its 5 s fetch wait, so
    resetOffsets, the same path, is left out); deleteTopicRecords moves the low watermark;
    createPartitions up, then down (INVALID_PARTITIONS); describing an unknown group (Dead),
    deleting one (GROUP_ID_NOT_FOUND) and an unknown topic (UNKNOWN_TOPIC_OR_PARTITION)."""
    topic, group = topic_name, f"{topic_name}-g"
    ops = _ops(kafkajs("admin", bootstrap=jb.bootstrap, ops=[
        {"op": "createTopics", "topics": [{"topic": topic, "partitions": 2}]},
        {"op": "createTopics", "topics": [{"topic": f"{topic}-bad", "partitions": 1, "configs": {"retention.ms": "soon"}}]},
        {"op": "describeCluster"},
    ]))
    assert ops[0] == ("createTopics", True), ops[0]
    assert [(e["error"], e["type"]) for e in ops[1][1]["error"]["errors"]] == [("KafkaJSCreateTopicError", "INVALID_CONFIG")], ops[1]
    cluster = ops[2][1]
    assert (cluster["brokers"], cluster["controller"]) == ([{"nodeId": 1, "host": jb.host, "port": jb.port}], 1), cluster
    assert cluster["clusterId"], cluster

    # CreateTime stamps: partition 0 at 1000, 2000, 3000, 4000; partition 1 at 1500, 2500, 3500.
    records = [Rec(b"a", f"p0-{i}".encode(), (), 0, 1000 * (i + 1)) for i in range(4)]
    records += [Rec(b"b", f"p1-{i}".encode(), (), 1, 1500 + 1000 * i) for i in range(3)]
    kafkajs("produce", bootstrap=jb.bootstrap, topic=topic, idempotent=True, records=[_json_record(r) for r in records])

    ops = _ops(kafkajs("admin", bootstrap=jb.bootstrap, ops=[
        {"op": "fetchTopicOffsetsByTimestamp", "topic": topic, "timestamp": 2200},
        {"op": "fetchTopicOffsetsByTimestamp", "topic": topic, "timestamp": 99999},
        {"op": "setOffsets", "group": group, "topic": topic, "partitions": [{"partition": 0, "offset": 1}, {"partition": 1, "offset": 2}]},
        {"op": "fetchOffsets", "group": group, "topics": [topic]},
        {"op": "describeGroups", "groups": [group, f"{group}-unknown"]},
    ]))
    assert ops[0][1] == [{"partition": 0, "offset": 2}, {"partition": 1, "offset": 1}], ops[0]
    assert ops[1][1] == [{"partition": 0, "offset": 4}, {"partition": 1, "offset": 3}], ops[1]
    assert ops[2] == ("setOffsets", None), ops[2]
    assert ops[3][1] == [{"topic": topic, "partitions": [{"partition": 0, "offset": 1, "metadata": None},
                                                         {"partition": 1, "offset": 2, "metadata": None}]}], ops[3]
    assert sorted((g["groupId"], g["errorCode"], g["state"], g["protocolType"], g["members"]) for g in ops[4][1]) == \
        [(group, 0, "Empty", "consumer", []), (f"{group}-unknown", 0, "Dead", "", [])], ops[4]

    got = _read_all(kafkajs("consume", bootstrap=jb.bootstrap, topic=topic, group=group, count=4, commit="auto",
                            fromBeginning=False), 4)
    assert sorted((r.partition, r.offset, r.value) for r in got) == \
        [(0, 1, b"p0-1"), (0, 2, b"p0-2"), (0, 3, b"p0-3"), (1, 2, b"p1-2")], f"not read from the set offsets: {got}"

    # KafkaJS's deleteTopicRecords looks the partitions' leaders up before it loads the topic's
    # metadata (KafkaJSTopicMetadataNotLoaded as a fresh admin client's first call, whatever the
    # broker): fetchTopicMetadata loads it first.
    ops = _ops(kafkajs("admin", bootstrap=jb.bootstrap, retries=0, ops=[
        {"op": "fetchOffsets", "group": group, "topics": [topic]},
        {"op": "fetchTopicMetadata", "topics": [topic]},
        {"op": "deleteTopicRecords", "topic": topic, "partitions": [{"partition": 0, "offset": 2}]},
        {"op": "fetchTopicOffsets", "topic": topic},
        {"op": "createPartitions", "topic": topic, "count": 3},
        {"op": "createPartitions", "topic": topic, "count": 2},
        {"op": "fetchTopicMetadata", "topics": [topic]},
        {"op": "deleteGroups", "groups": [f"{group}-unknown"]},
        {"op": "deleteTopics", "topics": [f"{topic}-unknown"]},
    ]))
    assert [op for op, _ in ops] == ["fetchOffsets", "fetchTopicMetadata", "deleteTopicRecords", "fetchTopicOffsets",
                                     "createPartitions", "createPartitions", "fetchTopicMetadata", "deleteGroups",
                                     "deleteTopics"], ops
    del ops[1]
    assert [p["offset"] for p in ops[0][1][0]["partitions"]] == [4, 3], f"the member's commits: {ops[0]}"
    assert ops[1] == ("deleteTopicRecords", None), ops[1]
    assert ops[2][1] == [{"partition": 0, "low": 2, "high": 4}, {"partition": 1, "low": 0, "high": 3}], ops[2]
    assert ops[3] == ("createPartitions", None), ops[3]
    assert (ops[4][1]["error"]["error"], ops[4][1]["error"]["type"]) == ("KafkaJSProtocolError", "INVALID_PARTITIONS"), ops[4]
    assert [p["partition"] for p in ops[5][1][0]["partitions"]] == [0, 1, 2], ops[5]
    assert ops[6][1]["error"]["groups"] == [{"groupId": f"{group}-unknown", "errorCode": 69, "type": "GROUP_ID_NOT_FOUND"}], ops[6]
    assert ops[7][1]["error"]["cause"]["type"] == "UNKNOWN_TOPIC_OR_PARTITION", ops[7]


def test_kafkajs_headers_both_ways(jb, new_topic):
    """Headers KafkaJS writes (binary, empty, one name repeated, non-ASCII names, many) read back
    exactly by KafkaJS and confluent-kafka; headers confluent-kafka writes, with a null value
    and a name repeated around another, read by KafkaJS: its API holds headers in an object, so
    a repeated name's values come back together (in order) at the name's first place.

    KafkaJS 2.2.4 cannot write a null header value (TypeError from Buffer.byteLength in
    sizeOfHeaders: tulios/kafkajs#1789, fix in PR #1786, unreleased); it reads them."""
    topic = new_topic(jb, partitions=1)
    many = tuple((f"h{i:02}", str(i).encode()) for i in range(20))
    written = [
        Rec(b"bin", b"v0", (("bin", bytes(range(256))), ("empty", b""))),
        Rec(b"dup", b"v1", (("dup", b"first"), ("dup", b""), ("dup", b"third"), ("other", b"x"))),
        Rec(b"utf8", b"v2", (("ключ-✓", "значение ✓".encode()), ("日本", b"\x00\x01"))),
        Rec(b"many", b"v3", many),
        Rec(b"none", b"v4", ()),
    ]
    written = [Rec(r.key, r.value, r.headers, 0) for r in written]
    kafkajs("produce", bootstrap=jb.bootstrap, topic=topic, idempotent=True, records=[_json_record(r) for r in written])
    expected = layout_of(written)
    got = _read_all(kafkajs("consume", bootstrap=jb.bootstrap, topic=topic, group=f"{topic}-g", count=5,
                            commit="none"), 5)
    assert layout_mismatch(got, expected) is None, layout_mismatch(got, expected)
    other = consume("confluent", jb.bootstrap, topic, 5)
    assert layout_mismatch(other, expected) is None, f"confluent-kafka: {layout_mismatch(other, expected)}"

    from_librdkafka = [
        Rec(b"null", b"w0", (("a", b"1"), ("nothing", None), ("a", b"2"))),
        Rec(b"interleaved", b"w1", (("x", b"1"), ("y", b"2"), ("x", b"3"), ("z", b""), ("y", b"4"))),
    ]
    acks = produce("confluent", jb.bootstrap, topic, [Rec(r.key, r.value, r.headers, 0) for r in from_librdkafka])
    assert [(a.partition, a.offset) for a in acks] == [(0, 5), (0, 6)], acks
    as_kafkajs_groups_them = [
        (("a", b"1"), ("a", b"2"), ("nothing", None)),
        (("x", b"1"), ("x", b"3"), ("y", b"2"), ("y", b"4"), ("z", b"")),
    ]
    lines = kafkajs("consume", bootstrap=jb.bootstrap, topic=topic, group=f"{topic}-g2", count=7, commit="none")
    got = _read_all(lines, 7)[5:]
    assert [(r.offset, r.key, r.value, r.headers) for r in got] == \
        [(5, b"null", b"w0", as_kafkajs_groups_them[0]), (6, b"interleaved", b"w1", as_kafkajs_groups_them[1])], got


def test_kafkajs_transactions_read_committed(jb, new_topic):
    """A KafkaJS transactional producer in consume-transform-produce shape: three transactions
    (commit, abort, commit), each with sendOffsets for the input's group. The group's offsets
    move with the committed ones only (fetchOffsets after each); a read_committed KafkaJS member
    sees exactly the committed records in order, a read_uncommitted one all of them at the same
    offsets; on the wire: transactional batches of one producer id and commit/abort/commit
    markers, the aborted range listed for a read_committed Fetch."""
    src = new_topic(jb, partitions=1, suffix="in")
    out = new_topic(jb, partitions=2, suffix="out")
    group = f"{src}-ctp"
    inputs = [Rec(None, f"in {i}".encode(), (), 0) for i in range(10)]
    kafkajs("produce", bootstrap=jb.bootstrap, topic=src, idempotent=True, records=[_json_record(r) for r in inputs])

    def txn_records(tag, n):
        return [_json_record(Rec(f"{tag}{i}".encode(), f"{tag}{i} out".encode(), (("txn", tag.encode()),), i % 2))
                for i in range(n)]

    def step(tag, n, offset, end):
        return {"records": txn_records(tag, n), "end": end,
                "sendOffsets": {"group": group, "topic": src, "partitions": [{"partition": 0, "offset": offset}]},
                "afterwards": [{"op": "fetchOffsets", "group": group, "topics": [src]}]}

    lines = kafkajs("txn", bootstrap=jb.bootstrap, transactionalId=f"{out}-txn", topic=out,
                    steps=[step("a", 4, 4, "commit"), step("b", 4, 8, "abort"), step("c", 2, 10, "commit")])
    assert [(line["step"], line["end"]) for line in lines if "step" in line] == [(0, "commit"), (1, "abort"), (2, "commit")]
    group_offsets = [r[0]["partitions"][0]["offset"] for op, r in _ops(lines)]
    assert group_offsets == [4, 4, 10], f"group offsets after commit, abort, commit: {group_offsets}"
    assert committed(jb.bootstrap, group, src) == {0: 10}

    committed_reads = _read_all(kafkajs("consume", bootstrap=jb.bootstrap, topic=out, group=f"{out}-rc", count=6,
                                        commit="none"), 6)
    all_reads = _read_all(kafkajs("consume", bootstrap=jb.bootstrap, topic=out, group=f"{out}-ru", count=10,
                                  commit="none", readUncommitted=True), 10)

    def per_partition(rs):
        return {p: [r.key.decode() for r in sorted((r for r in rs if r.partition == p), key=lambda r: r.offset)]
                for p in (0, 1)}

    assert per_partition(committed_reads) == {0: ["a0", "a2", "c0"], 1: ["a1", "a3", "c1"]}, committed_reads
    assert per_partition(all_reads) == {0: ["a0", "a2", "b0", "b2", "c0"], 1: ["a1", "a3", "b1", "b3", "c1"]}, all_reads
    offset_of = {(r.partition, r.key): r.offset for r in all_reads}
    assert all(offset_of[(r.partition, r.key)] == r.offset for r in committed_reads), (committed_reads, all_reads)

    with Conn(jb.bootstrap) as c:
        for p in (0, 1):
            fetched = c.fetch(out, p)
            data = [b for b in fetched.batches if not b.control]
            markers = [b.control_type for b in fetched.batches if b.control]
            assert all(b.transactional for b in data) and len({b.producer_id for b in data}) == 1, data
            assert markers == [1, 0, 1], f"partition {p}: control markers {markers} (1 commit, 0 abort)"
            assert fetched.last_stable_offset == fetched.high_watermark == 8, fetched
            aborted_first = offset_of[(p, f"b{p}".encode())]
            rc = c.fetch(out, p, read_committed=True)
            assert rc.aborted == [(data[0].producer_id, aborted_first)], rc.aborted


# ======================================================================= confluent-kafka-javascript

@needs_confluent_js
@pytest.mark.parametrize("codec", CODECS)
def test_confluent_js_round_trip(jb, new_topic, codec):
    """@confluentinc/kafka-javascript's KafkaJS API: an idempotent acks=all producer in the codec
    (a delivery report per record: partition and offset, keyed records where the Java client's
    partitioner puts them), a group member that reads exactly those records back in order and
    commits explicitly; the group's offsets read with kafka-python are the ends."""
    topic = new_topic(jb, partitions=3)
    group = f"{topic}-g"
    records = js_records(f"confluent-js/{codec}")
    before = _now_ms()
    out = confluent_js("produce", bootstrap=jb.bootstrap, topic=topic, codec=codec, idempotent=True,
                       records=[_json_record(r) for r in records])
    after = _now_ms()
    acks = [Ack(a["partition"], a["offset"]) for a in _one(out, "acks")]
    assert [a["errorCode"] for a in _one(out, "acks")] == [0] * len(records)
    expected = expected_layout(placed(records, 3), acks)

    stored, pids = set(), set()
    for p, bs in stored_batches(jb.bootstrap, topic, 3).items():
        assert sum(b.count for b in bs) == len(expected[p]), bs
        stored |= {b.attributes & 0x7 for b in bs}
        pids |= {b.producer_id for b in bs}
    # librdkafka sends a batch uncompressed when compressing does not make it smaller.
    assert CODEC_IDS[codec] in stored and stored <= {0, CODEC_IDS[codec]}, f"stored codecs {stored} for {codec}"
    assert len(pids) == 1 and min(pids) >= 0, f"one idempotent producer id expected, batches carry {pids}"

    lines = confluent_js("consume", bootstrap=jb.bootstrap, topic=topic, group=group, count=len(records))
    got = _read_all(lines, len(records))
    assert layout_mismatch(got, expected) is None, layout_mismatch(got, expected)
    assert_timestamps(got, records, before, after)
    assert {int(p): o for p, o in _one(lines, "committed").items()} == ends(expected)
    assert committed(jb.bootstrap, group, topic) == ends(expected)


@needs_confluent_js
def test_confluent_js_headers_both_ways(jb, new_topic):
    """Headers @confluentinc/kafka-javascript writes (binary with NUL bytes, empty, one name
    repeated, non-ASCII names) read back exactly by itself and confluent-kafka; headers
    confluent-kafka writes, with a null value and a name repeated around another, read by it:
    grouped by name, as its KafkaJS-shaped API holds them in an object.

    The library has no null header value: it refuses one when producing ("Header value must be
    a string or buffer", src/producer.cc) and hands a null one it reads over as an empty Buffer
    (src/common.cc makes every value a Buffer of value_size() bytes); so the null is checked here
    as that empty Buffer (KafkaJS, which tells null from empty, reads the same records exactly).
    It also writes an empty Buffer value as null; js/confluent_cli.js passes empty values as ''."""
    topic = new_topic(jb, partitions=1)
    written = [
        Rec(b"bin", b"v0", (("bin", bytes(range(256))), ("nul", b"a\x00b"), ("empty", b""))),
        Rec(b"dup", b"v1", (("dup", b"first"), ("dup", b""), ("dup", b"third"), ("other", b"x"))),
        Rec(b"utf8", b"v2", (("ключ-✓", "значение ✓".encode()),)),
        Rec(b"none", b"v3", ()),
    ]
    written = [Rec(r.key, r.value, r.headers, 0) for r in written]
    out = confluent_js("produce", bootstrap=jb.bootstrap, topic=topic, records=[_json_record(r) for r in written])
    assert [(a["partition"], a["offset"]) for a in _one(out, "acks")] == [(0, i) for i in range(4)], out
    expected = layout_of(written)
    other = consume("confluent", jb.bootstrap, topic, 4)
    assert layout_mismatch(other, expected) is None, f"confluent-kafka: {layout_mismatch(other, expected)}"
    by_kafkajs = _read_all(kafkajs("consume", bootstrap=jb.bootstrap, topic=topic, group=f"{topic}-kafkajs", count=4,
                                   commit="none"), 4)
    assert layout_mismatch(by_kafkajs, expected) is None, f"KafkaJS: {layout_mismatch(by_kafkajs, expected)}"

    acks = produce("confluent", jb.bootstrap, topic, [
        Rec(b"null", b"w0", (("a", b"1"), ("nothing", None), ("a", b"2")), 0),
        Rec(b"interleaved", b"w1", (("x", b"1"), ("y", b"2"), ("x", b"3")), 0),
    ])
    assert [(a.partition, a.offset) for a in acks] == [(0, 4), (0, 5)], acks
    got = _read_all(confluent_js("consume", bootstrap=jb.bootstrap, topic=topic, group=f"{topic}-g", count=6), 6)
    assert layout_mismatch(got[:4], expected) is None, layout_mismatch(got[:4], expected)
    assert [(r.offset, r.key, r.headers) for r in got[4:]] == [
        (4, b"null", (("a", b"1"), ("a", b"2"), ("nothing", b""))),
        (5, b"interleaved", (("x", b"1"), ("x", b"3"), ("y", b"2"))),
    ], got[4:]


@needs_confluent_js
def test_confluent_js_admin_topics_and_groups(jb, topic_name):
    """@confluentinc/kafka-javascript's admin client: createTopics (a second time: false),
    fetchTopicMetadata, listTopics; after a member read and committed: listGroups and
    describeGroups (EMPTY once it left), fetchOffsets, fetchTopicOffsets; deleteTopics, after
    which no client lists the topic."""
    from adminlib import make_admin

    topic, group = topic_name, f"{topic_name}-g"
    ops = _ops(confluent_js("admin", bootstrap=jb.bootstrap, ops=[
        {"op": "createTopics", "topics": [{"topic": topic, "partitions": 2, "configs": {"retention.ms": 7200000}}]},
        {"op": "createTopics", "topics": [{"topic": topic, "partitions": 2}]},
        {"op": "fetchTopicMetadata", "topics": [topic]},
        {"op": "listTopics"},
    ]))
    assert ops[0] == ("createTopics", True) and ops[1] == ("createTopics", False), ops[:2]
    assert ops[2][1] == [{"name": topic, "partitions": [
        {"partition": p, "errorCode": 0, "leader": 1, "replicas": [1], "isr": [1]} for p in range(2)]}], ops[2]
    assert topic in ops[3][1]
    assert make_admin("confluent", jb.bootstrap).describe_configs(topic)["retention.ms"].value == "7200000"

    records = [Rec(f"k{i}".encode(), f"v{i}".encode(), (), i % 2) for i in range(6)]
    confluent_js("produce", bootstrap=jb.bootstrap, topic=topic, idempotent=True, records=[_json_record(r) for r in records])
    got = _read_all(confluent_js("consume", bootstrap=jb.bootstrap, topic=topic, group=group, count=6), 6)
    assert layout_mismatch(got, layout_of(records)) is None, layout_mismatch(got, layout_of(records))

    ops = _ops(confluent_js("admin", bootstrap=jb.bootstrap, ops=[
        {"op": "listGroups"},
        {"op": "describeGroups", "groups": [group]},
        {"op": "fetchOffsets", "group": group, "topics": [topic]},
        {"op": "fetchTopicOffsets", "topic": topic},
        {"op": "deleteTopics", "topics": [topic]},
    ]))
    listed = {g["groupId"]: g for g in ops[0][1]}
    assert listed.get(group) == {"groupId": group, "protocolType": "consumer", "state": "EMPTY"}, ops[0]
    (described,) = ops[1][1]
    assert (described["groupId"], described["state"], described["protocolType"], described["members"]) == \
        (group, "EMPTY", "consumer", []), described
    assert ops[2][1] == [{"topic": topic, "partitions": [{"partition": 0, "offset": 3}, {"partition": 1, "offset": 3}]}], ops[2]
    assert ops[3][1] == [{"partition": p, "low": 0, "high": 3} for p in range(2)], ops[3]
    assert ops[4] == ("deleteTopics", True), ops[4]
    wait_for(lambda: topic not in _ops(confluent_js("admin", bootstrap=jb.bootstrap, ops=[{"op": "listTopics"}]))[0][1],
             f"{topic} gone from confluent-kafka-javascript's listTopics")
    assert topic not in make_admin("confluent", jb.bootstrap).list_topics()
