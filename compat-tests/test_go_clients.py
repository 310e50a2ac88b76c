"""The Go client families over a real socket: franz-go (kgo, kadm), IBM/sarama and
segmentio/kafka-go, pinned in go/go.mod and driven through go/bin/clients (go/clients, built by
setup.sh), one subprocess per call printing JSON lines.

- every producer x codec, read back by all three consumers: keys, null keys and values, headers
  (repeated and empty ones, in order), offsets, order per partition, the producer's timestamps,
  and the codec of the batches the broker stored;
- null vs empty keys, values and header values, and explicit CreateTime timestamps;
- acks 0, 1 and all; idempotent producers (franz-go, sarama): one producer id and contiguous
  sequences in the stored batches, every record once;
- consumer groups that commit (franz-go classic and KIP-848, sarama, kafka-go): the live group
  as the family's own admin describes it, the commits as every family's admin reads them, a new
  member resuming exactly from them, the group listed, deleted; a second franz-go member joining
  (classic cooperative-sticky and KIP-848): only the partitions it gets move, each record once;
- transactions (franz-go, sarama): committed, aborted and open ones (the last stable offset held
  back) read with read_committed by each consumer; franz-go's GroupTransactSession aborting a
  round and redoing it;
- each family's admin: create (configs, TOPIC_ALREADY_EXISTS), describe, configs, partitions
  added (and a shrink refused), earliest/latest/by-time offsets (after DeleteRecords), delete;
  kafka-go's Conn (the controller's CreateTopics/DeleteTopics, partitions, offsets, a leader's
  writes and reads).

What the clients themselves do, the same on Kafka 4.4 and on Fjord, and how the tests take it:
- kafka-go returns zero-length keys, values and header values as nil (read.go's readNewBytes
  allocates only for a length > 0), so what it reads is compared with empty taken as null; it
  writes them apart, and the other two read them apart.
- kafka-go's Reader only passes the isolation level on: it returns aborted records and the
  transaction markers themselves as messages (segmentio/kafka-go#1332; the fix, #1446, is not
  released). test_transactions asserts exactly that log, markers included.
- kafka-go has no idempotent or transactional producer, and neither it nor sarama a KIP-848
  consumer.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

import pytest

from clientlib import CODECS, Ack, ClientError, Rec, assert_ok, by_partition, expected_layout, layout_mismatch, sample_records
from conftest import group_overrides, wait_for
from eoslib import Conn as EosConn
from wire import CODEC_IDS, fetch_batches

GO_CLIENTS = Path(__file__).resolve().parent / "go" / "bin" / "clients"
FAMILIES = ("franz", "sarama", "kafka-go")
#: How long one call may take: a produce or a read is well under a second, a group join a few.
GO_TIMEOUT_S = 30

TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
UNKNOWN_TOPIC_OR_PARTITION = 3
GROUP_ID_NOT_FOUND = 69
#: Keys of the control records that end a transaction: version 0, type 1 (commit) / 0 (abort).
COMMIT_MARKER, ABORT_MARKER = b"\x00\x00\x00\x01", b"\x00\x00\x00\x00"

pytestmark = pytest.mark.skipif(not GO_CLIENTS.exists(), reason="setup.sh builds go/bin/clients when Go is installed")


@pytest.fixture(scope="module")
def gobroker(start_broker):
    return start_broker("go-clients", **group_overrides(**{"auto.create.topics.enable": "false", "num.partitions": 1}))


# ------------------------------------------------------------------------------------ the runner

def _hex(b):
    return None if b is None else b.hex()


def _unhex(s):
    return None if s is None else bytes.fromhex(s)


def go(cmd: str, *args, records: list[Rec] | None = None, timeout_s: float = GO_TIMEOUT_S) -> list[dict]:
    """Runs `clients CMD ARGS` and returns its JSON lines; fails unless it ended with "done"."""
    stdin = None
    if records is not None:
        stdin = "".join(json.dumps({"key": _hex(r.key), "value": _hex(r.value),
                                    "headers": [[k, _hex(v)] for k, v in r.headers],
                                    "partition": r.partition, "timestamp": r.timestamp}) + "\n" for r in records)
    argv = [str(GO_CLIENTS), cmd, *map(str, args), "-timeout", f"{timeout_s:g}s"]
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout_s + 30)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines or not lines[-1].get("done"):
        raise ClientError(f"clients {cmd} {' '.join(map(str, args))} exited {p.returncode}: "
                          f"last lines {lines[-3:]} stderr={p.stderr[-3000:]!r}")
    return lines


def go_rec(l: dict) -> Rec:
    return Rec(_unhex(l["key"]), _unhex(l["value"]), tuple((k, _unhex(v)) for k, v in l["headers"]),
               l["partition"], l["timestamp"], l["offset"])


def records_of(lines: list[dict]) -> list[Rec]:
    return [go_rec(l) for l in lines if "offset" in l and "headers" in l]


def produce(client, broker, topic, records, codec="none", acks="all", idempotent=False) -> tuple[list[Ack], list[dict]]:
    """One Ack per record, in order, and every line the producer printed."""
    lines = go("produce", "-client", client, "-brokers", broker.bootstrap, "-topic", topic, "-codec", codec,
               "-acks", acks, *(["-idempotent"] if idempotent else []), records=records)
    rows = sorted((l for l in lines if "i" in l), key=lambda l: l["i"])
    assert [l["i"] for l in rows] == list(range(len(records))), rows
    return [Ack(l["partition"], l["offset"], l["timestamp"], l.get("error") or None) for l in rows], lines


def consume(client, broker, topic, count, isolation="read_uncommitted") -> list[Rec]:
    """Reads `count` records from the start of every partition, no group."""
    return records_of(go("consume", "-client", client, "-brokers", broker.bootstrap, "-topic", topic,
                         "-count", count, "-isolation", isolation))


def admin(client, broker, op, **kw) -> dict:
    args = ["-client", client, "-brokers", broker.bootstrap, "-op", op]
    for k, v in kw.items():
        args += [f"-{k}", v]
    (res,) = [l for l in go("admin", *args) if l.get("op") == op]
    return res


def reads_as(consumer: str, layout: dict[int, list[tuple[int, tuple]]]) -> dict[int, list[tuple[int, tuple]]]:
    """What `consumer` reads of `layout`: kafka-go hands back empty bytes as nil (module doc)."""
    if consumer != "kafka-go":
        return layout
    e = lambda b: None if b == b"" else b  # noqa: E731
    return {p: [(o, (e(k), e(v), tuple((hk, e(hv)) for hk, hv in hs))) for o, (k, v, hs) in rows]
            for p, rows in layout.items()}


def acked_layout(records, acks) -> dict[int, list[tuple[int, tuple]]]:
    """{partition: [(acked offset, content)]}, for records appended to a partition that has some."""
    layout: dict[int, list[tuple[int, tuple]]] = {}
    for r, a in zip(records, acks, strict=True):
        assert a.error is None and a.partition == r.partition, a
        layout.setdefault(a.partition, []).append((a.offset, r.content()))
    return layout


def read_back_everywhere(broker, topic, expected, isolation="read_uncommitted") -> dict[str, list[Rec]]:
    """Each family reads the whole topic; every one must read exactly `expected`, and all agree
    on every record's timestamp."""
    count = sum(len(rows) for rows in expected.values())
    problems, seen = [], {}
    for consumer in FAMILIES:
        got = consume(consumer, broker, topic, count, isolation)
        seen[consumer] = got
        diff = layout_mismatch(got, reads_as(consumer, expected))
        if diff:
            problems.append(f"{consumer}: {diff}")
    stamps = {c: {(r.partition, r.offset): r.timestamp for r in got} for c, got in seen.items()}
    for c in FAMILIES[1:]:
        if stamps[c] != stamps[FAMILIES[0]]:
            problems.append(f"{c}: timestamps differ from {FAMILIES[0]}'s")
    assert not problems, "\n".join(problems)
    return seen


# ------------------------------------------------------------------------------- produce / fetch

@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("producer", FAMILIES)
def test_round_trip(gobroker, new_topic, producer, codec):
    """One Go producer, one codec; the three Go consumers read back the same records in the same
    order, and the broker stored batches of that codec."""
    topic = new_topic(gobroker, partitions=3)
    records = sample_records(f"{producer}/{codec}", partitions=3, per_partition=6)
    before_ms = int(time.time() * 1000)
    acks, _ = produce(producer, gobroker, topic, records, codec=codec)
    after_ms = int(time.time() * 1000)
    assert_ok(acks)
    expected = expected_layout(records, acks)
    stored = set()
    for p, rows in expected.items():
        batches = fetch_batches(gobroker.bootstrap, topic, p)
        assert sum(b.record_count for b in batches) == len(rows), batches
        assert {b.magic for b in batches} == {2}, batches
        stored |= {b.codec for b in batches}
    # franz-go sends a batch uncompressed when compressing does not make it smaller (a batch cut
    # short by its linger): the asked codec, and no other.
    assert CODEC_IDS[codec] in stored and stored <= {0, CODEC_IDS[codec]}, \
        f"{producer} asked for {codec}, the broker stored codecs {sorted(stored)}"
    seen = read_back_everywhere(gobroker, topic, expected)
    # No timestamp was given: each record carries the producer's clock (CreateTime).
    for r in seen["franz"]:
        assert before_ms - 5000 <= r.timestamp <= after_ms + 5000, r
    # franz-go reports the timestamp it sent; sarama and kafka-go leave it unset in what they return.
    reported = {(a.partition, a.offset): a.timestamp for a in acks if a.timestamp is not None}
    assert (producer == "franz") == bool(reported), acks
    assert all(r.timestamp == reported[(r.partition, r.offset)] for r in seen["franz"] if reported)


@pytest.mark.parametrize("producer", FAMILIES)
def test_null_and_empty_bytes_and_timestamps(gobroker, new_topic, producer):
    """Null vs empty keys, values and header values, arbitrary bytes, and explicit CreateTime
    timestamps, each read back by every family (kafka-go with its empty-as-nil, module doc)."""
    # Timestamps from 2023 are past the default retention.ms: keep the records.
    topic = new_topic(gobroker, partitions=2, configs={"retention.ms": "-1"})
    rnd = random.Random(f"go-bytes-{producer}")
    base_ts = 1_700_000_000_000
    records = []
    for i in range(12):
        key = [None, b"", b"\x00\xff\n\t" + bytes([i]), rnd.randbytes(8)][i % 4]
        value = [b"", None, rnd.randbytes(300), b"line1\nline2\x00\xfe"][i % 4]
        headers = (("null", None), ("empty", b""), ("", b"nameless"), ("bin", rnd.randbytes(5)), ("null", b"again"))
        records.append(Rec(key, value, headers, i % 2, base_ts + 1000 * i))
    acks, _ = produce(producer, gobroker, topic, records, codec="lz4")
    assert_ok(acks)
    assert [a.timestamp for a in acks] == [r.timestamp for r in records], "acks must echo CreateTime"
    expected = expected_layout(records, acks)
    seen = read_back_everywhere(gobroker, topic, expected)
    for r in seen["sarama"]:
        assert r.timestamp == base_ts + 1000 * (2 * r.offset + r.partition), r


@pytest.mark.parametrize("producer", FAMILIES)
def test_acks_levels(gobroker, new_topic, producer):
    """acks=0, 1 and all, one after the other into one partition: every record lands, in order;
    the acks=1 and =all producers are told their offsets."""
    topic = new_topic(gobroker, partitions=1)
    records: list[Rec] = []
    for acks in ("0", "1", "all"):
        batch = [Rec(f"{acks}-{i}".encode(), f"acks={acks} #{i}".encode(), (("acks", acks.encode()),), 0)
                 for i in range(5)]
        acked, _ = produce(producer, gobroker, topic, batch, acks=acks)
        assert_ok(acked)
        if acks != "0":
            assert [a.offset for a in acked] == list(range(len(records), len(records) + 5)), acked
        records += batch
        # acks=0 returns before the broker appended: the next producer must come after.
        wait_for(lambda: admin(producer, gobroker, "offsets", topic=topic)["latest"] == {"0": len(records)},
                 f"high watermark {len(records)} after acks={acks}")
    got = consume("franz", gobroker, topic, len(records))
    assert [(r.offset, r.content()) for r in got] == [(i, r.content()) for i, r in enumerate(records)]


@pytest.mark.parametrize("producer", ["franz", "sarama"])
def test_idempotent_producer(gobroker, new_topic, producer):
    """An idempotent producer's batches carry one producer id and per-partition sequences that
    start at 0 and follow on; every record is there once."""
    topic = new_topic(gobroker, partitions=3)
    records = sample_records(f"{producer}/idempotent", partitions=3, per_partition=20)
    acks, lines = produce(producer, gobroker, topic, records, codec="zstd", idempotent=True)
    assert_ok(acks)
    expected = expected_layout(records, acks)
    pids = set()
    with EosConn(gobroker.bootstrap) as c:
        for p in range(3):
            batches = c.fetch(topic, p).batches
            assert sum(b.count for b in batches) == 20, batches
            seq = 0
            for b in batches:
                assert b.producer_id >= 0 and b.producer_epoch >= 0, b
                assert b.base_sequence == seq, f"partition {p}: batch at {b.base_offset} has sequence {b.base_sequence}, expected {seq}"
                seq += b.count
                pids.add((b.producer_id, b.producer_epoch))
    assert len(pids) == 1, f"one producer, one id: {pids}"
    if producer == "franz":
        (told,) = [(l["producer_id"], l["producer_epoch"]) for l in lines if "producer_id" in l]
        assert {told} == pids
    read_back_everywhere(gobroker, topic, expected)


# -------------------------------------------------------------------------------- consumer groups

GROUP_CASES = [("franz", "classic"), ("franz", "consumer"), ("sarama", "classic"), ("kafka-go", "classic")]
#: The assignor each group ends up with: franz-go's default is cooperative-sticky; with KIP-848 it
#: names the broker's range assignor; sarama's default is range; kafka-go's DescribeGroups
#: shows neither protocol type nor protocol.
ASSIGNOR = {("franz", "classic"): "cooperative-sticky", ("franz", "consumer"): "range",
            ("sarama", "classic"): "range", ("kafka-go", "classic"): ""}


@pytest.mark.parametrize("client,protocol", GROUP_CASES, ids=[f"{c}-{p}" for c, p in GROUP_CASES])
def test_consumer_group(gobroker, new_topic, client, protocol):
    """A group member reads everything and commits; while it is in the group its family's admin
    describes it (one member, all partitions); after it left every family's admin reads the
    commits and lists the group; a new member resumes exactly from the commits; the group is
    deleted and gone from every list."""
    topic = new_topic(gobroker, partitions=3)
    group = f"{topic}-group"
    first = sample_records(f"{client}/group", partitions=3, per_partition=6)
    acks, _ = produce(client, gobroker, topic, first)
    assert_ok(acks)
    member = ["-client", client, "-protocol", protocol, "-brokers", gobroker.bootstrap, "-topic", topic, "-group", group]

    lines = go("group", *member, "-count", len(first))
    assert layout_mismatch(records_of(lines), reads_as(client, expected_layout(first, acks))) is None
    (live,) = [l for l in lines if "describe" in l]
    d = live["describe"]
    assert d["state"] == "Stable", d
    assert [(m["client_id"], m["assigned"]) for m in d["members"]] == [(f"fjord-compat-{client}", {topic: [0, 1, 2]})], d
    assert d["protocol"] == ASSIGNOR[(client, protocol)], d
    assert d["protocol_type"] == ("" if client == "kafka-go" else "consumer"), d
    assert live["committed"] == {"0": 6, "1": 6, "2": 6}

    for fam in FAMILIES:
        assert admin(fam, gobroker, "committed", group=group, topic=topic)["offsets"] == {"0": 6, "1": 6, "2": 6}, fam
        listed = admin(fam, gobroker, "groups")["groups"]
        assert listed.get(group, {}).get("protocol_type") == "consumer", (fam, listed.get(group))
    # kadm's ListGroups also shows the state and (ListGroups v5) the group type.
    listed = admin("franz", gobroker, "groups")["groups"][group]
    assert (listed["state"], listed["type"]) == ("Empty", protocol), listed
    left = admin(client, gobroker, "describe-group", group=group, protocol=protocol)["group"]
    assert (left["error_code"], left["state"], left["members"]) == (0, "Empty", []), left
    if protocol == "consumer":
        # Not a classic group: the classic DescribeGroups does not know it.
        classic = admin("franz", gobroker, "describe-group", group=group, protocol="classic")["group"]
        assert classic["error_code"] == GROUP_ID_NOT_FOUND, classic

    more = [Rec(f"more-{i}".encode(), f"after the commit #{i}".encode(), (("round", b"2"),), i % 3) for i in range(9)]
    acks, _ = produce(client, gobroker, topic, more)
    expected = acked_layout(more, acks)
    assert {p: [o for o, _ in rows] for p, rows in expected.items()} == {0: [6, 7, 8], 1: [6, 7, 8], 2: [6, 7, 8]}
    lines = go("group", *member, "-count", len(more))
    assert layout_mismatch(records_of(lines), reads_as(client, expected)) is None, "the group resumed elsewhere"
    (live,) = [l for l in lines if "describe" in l]
    assert live["committed"] == {"0": 9, "1": 9, "2": 9}

    assert admin(client, gobroker, "delete-group", group=group)["error_code"] == 0
    for fam in FAMILIES:
        assert group not in admin(fam, gobroker, "groups")["groups"], fam


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_franz_group_second_member(gobroker, new_topic, protocol):
    """Two franz-go members, classic (cooperative-sticky) and KIP-848: a reads the topic and
    commits, b joins; a gives up only the partitions b gets (committing before it does), and
    the records produced once both settled are each read once, by their partition's owner."""
    topic = new_topic(gobroker, partitions=4)
    group = f"{topic}-group"
    first = [Rec(f"first-{i}".encode(), f"before b #{i}".encode(), (), i % 4) for i in range(30)]
    acks, _ = produce("franz", gobroker, topic, first)
    lines = go("group2", "-brokers", gobroker.bootstrap, "-topic", topic, "-group", group, "-count", len(first),
               "-partitions", 4, "-protocol", protocol)
    assert not [l for l in lines if "commit_error" in l]
    reads = [(l["member"], l["phase"], go_rec(l["record"])) for l in lines if "record" in l]
    assert {m for m, ph, _ in reads if ph == 1} == {"a"}
    assert layout_mismatch([r for _, ph, r in reads if ph == 1], expected_layout(first, acks)) is None

    (settled,) = [l["settled"] for l in lines if "settled" in l]
    owner = {p: m for m, ps in settled.items() for p in ps}
    assert sorted(owner) == [0, 1, 2, 3] and all(settled.values()), settled
    before = lines[:lines.index(next(l for l in lines if "settled" in l))]
    revoked_from_a = {p for l in before if l.get("member") == "a" and "revoked" in l for p in l["revoked"][topic]}
    assert revoked_from_a == set(settled["b"]), f"a gave up {revoked_from_a}, b got {settled['b']}"
    assert not [l for l in before if "lost" in l]

    second = [(m, r) for m, ph, r in reads if ph == 2]
    assert all(owner[r.partition] == m for m, r in second), [(m, r.partition, r.offset) for m, r in second]
    # 30 records round-robin over 4 partitions: 8, 8, 7, 7 in each round.
    starts = {0: 8, 1: 8, 2: 7, 3: 7}
    expected = {p: [(starts[p] + j, (f"second-{i}".encode(), f"after b joined #{i}".encode(), ()))
                    for j, i in enumerate(range(p, 30, 4))] for p in range(4)}
    assert layout_mismatch([r for _, r in second], expected) is None, "each record once"

    (live,) = [l for l in lines if "describe" in l]
    d = live["describe"]
    assert d["state"] == "Stable" and d["protocol"] == ASSIGNOR[("franz", protocol)], d
    assert sorted(tuple(m["assigned"][topic]) for m in d["members"]) == sorted(tuple(ps) for ps in settled.values()), d
    assert live["committed"] == {"0": 16, "1": 16, "2": 14, "3": 14}


# ---------------------------------------------------------------------------------- transactions

@pytest.mark.parametrize("producer", ["franz", "sarama"])
def test_transactions(gobroker, new_topic, producer):
    """A transactional producer (kgo's, sarama's): transactions a (commit), b (abort), c (commit)
    and d, which is open while the offsets are listed (the last stable offset stays before it)
    and then aborted. read_committed consumers see a and c only; read_uncommitted sees all four."""
    topic = new_topic(gobroker, partitions=2)
    lines = go("txn", "-client", producer, "-brokers", gobroker.bootstrap, "-topic", topic, "-txn-id", f"{topic}-txn")
    # 5 records per transaction and partition, each transaction followed by its marker.
    first = {"a": 0, "b": 6, "c": 12, "d": 18}
    for name, start in first.items():
        for p in (0, 1):
            offs = sorted(l["offset"] for l in lines if l.get("txn") == name and l["partition"] == p)
            assert offs == list(range(start, start + 5)), (name, p, offs)
    assert [(l["ended"], l["commit"]) for l in lines if "ended" in l] == [("a", True), ("b", False), ("c", True), ("d", False)]
    (open_,) = [l["open"] for l in lines if "open" in l]
    assert open_ == {"last_stable": {"0": 18, "1": 18}, "high_watermark": {"0": 23, "1": 23}}, open_
    (closed,) = [l["closed"] for l in lines if "closed" in l]
    assert closed == {"last_stable": {"0": 24, "1": 24}, "high_watermark": {"0": 24, "1": 24}}, closed
    with EosConn(gobroker.bootstrap) as c:
        for p in (0, 1):
            log = c.fetch(topic, p, read_committed=True)
            assert all(b.transactional for b in log.batches), log.batches
            assert [(b.base_offset, b.control_type) for b in log.batches if b.control] == [(5, 1), (11, 0), (17, 1), (23, 0)]
            assert sorted(first for _, first in log.aborted) == [6, 18], "a read_committed fetch names the aborted transactions"

    def layout(names):
        return {p: [(first[n] + i, (f"{n}-{p}-{i}".encode(), f"txn {n} #{i}".encode(), ()))
                    for n in names for i in range(5)] for p in (0, 1)}

    for consumer in ("franz", "sarama"):
        got = consume(consumer, gobroker, topic, 20, isolation="read_committed")
        assert layout_mismatch(got, layout("ac")) is None, consumer
    got = consume("franz", gobroker, topic, 40)
    assert layout_mismatch(got, layout("abcd")) is None
    # kafka-go returns the whole log, aborted records and markers too (module doc).
    got = consume("kafka-go", gobroker, topic, 48, isolation="read_committed")
    markers = {5: COMMIT_MARKER, 11: ABORT_MARKER, 17: COMMIT_MARKER, 23: ABORT_MARKER}
    for p, rs in by_partition(got).items():
        want = [(o, k) for o, (k, _, _) in layout("abcd")[p]] + list(markers.items())
        assert [(r.offset, r.key) for r in rs] == sorted(want), p


def test_franz_group_transact_session(gobroker, new_topic):
    """kgo.GroupTransactSession: consume-transform-produce with the group's offsets in the
    transaction. Round 1 (input 0-9) commits, round 2 (10-19) aborts and the session rewinds to
    the committed offset, round 3 redoes 10-19 and commits: read_committed sees each input once."""
    src = new_topic(gobroker, partitions=1, suffix="in")
    out = new_topic(gobroker, partitions=1, suffix="out")
    group = f"{src}-group"
    inputs = [Rec(f"k{i}".encode(), f"v{i}".encode(), (), 0) for i in range(20)]
    assert_ok(produce("franz", gobroker, src, inputs)[0])
    lines = go("txn-group", "-brokers", gobroker.bootstrap, "-topic", src, "-out", out, "-group", group,
               "-txn-id", f"{src}-txn")
    rounds = [(l["in_offsets"], l["commit"], l["committed"]) for l in lines if "round" in l]
    assert rounds == [(list(range(10)), True, True), (list(range(10, 20)), False, False),
                      (list(range(10, 20)), True, True)]
    (committed,) = [l["committed"] for l in lines if "round" not in l and "committed" in l]
    assert committed == {"0": 20}

    def outputs(offsets, inputs_):
        return {0: [(o, (f"k{i}".encode(), f"out:v{i}".encode(), ())) for o, i in zip(offsets, inputs_, strict=True)]}

    # Markers at 10 (commit), 21 (abort), 32 (commit).
    committed_layout = outputs([*range(10), *range(22, 32)], range(20))
    for consumer in ("franz", "sarama"):
        assert layout_mismatch(consume(consumer, gobroker, out, 20, isolation="read_committed"), committed_layout) is None, consumer
    everything = outputs([*range(10), *range(11, 21), *range(22, 32)], [*range(10), *range(10, 20), *range(10, 20)])
    assert layout_mismatch(consume("sarama", gobroker, out, 30), everything) is None
    for fam in FAMILIES:
        assert admin(fam, gobroker, "committed", group=group, topic=src)["offsets"] == {"0": 20}, fam


# ------------------------------------------------------------------------------------------ admin

@pytest.mark.parametrize("client", FAMILIES)
def test_admin(gobroker, topic_name, client):
    """One family's admin calls, one after the other on one topic (kadm, sarama's ClusterAdmin,
    kafka-go's Client)."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    topic = topic_name
    call = lambda op, **kw: admin(client, gobroker, op, **kw)  # noqa: E731
    configs = {"retention.ms": "86400000", "max.message.bytes": "500000"}
    r = call("create", topic=topic, partitions=3, config=",".join(f"{k}={v}" for k, v in configs.items()))
    assert r["error_code"] == 0, r
    r = call("create", topic=topic, partitions=3)
    assert r["error_code"] == TOPIC_ALREADY_EXISTS, r
    wait_for(lambda: topic in call("list-topics")["topics"], f"{topic} listed")

    d = call("describe", topic=topic)["topic"]
    assert d["error_code"] == 0, d
    assert d["partitions"] == [{"partition": p, "leader": 1, "replicas": [1], "isr": [1]} for p in range(3)], d
    if client != "kafka-go":  # its Metadata does not show the topic id
        assert d["topic_id"] not in ("", "0" * 32), d
        assert d["topic_id"] == admin("franz", gobroker, "describe", topic=topic)["topic"]["topic_id"]
    assert call("configs", topic=topic, keys=",".join(configs))["configs"] == configs

    assert call("create-partitions", topic=topic, partitions=5)["error_code"] == 0
    wait_for(lambda: len(call("describe", topic=topic)["topic"]["partitions"]) == 5, f"{topic} with 5 partitions")
    assert call("create-partitions", topic=topic, partitions=2)["error_code"] == INVALID_PARTITIONS

    base_ts = int(time.time() * 1000) - 60_000
    records = [Rec(f"k{p}-{i}".encode(), f"v{i}".encode(), (), p, base_ts + 1000 * i) for p in range(5) for i in range(3)]
    assert_ok(produce(client, gobroker, topic, records)[0])
    confluent = AdminClient({"bootstrap.servers": gobroker.bootstrap})
    (fut,) = confluent.delete_records([TopicPartition(topic, 0, 1)], request_timeout=20, operation_timeout=20).values()
    assert fut.result(30).low_watermark == 1
    o = call("offsets", topic=topic, at=base_ts + 1500)
    assert o["earliest"] == {"0": 1, "1": 0, "2": 0, "3": 0, "4": 0}, o
    assert o["latest"] == {str(p): 3 for p in range(5)}, o
    assert o["after"] == {str(p): 2 for p in range(5)}, "the first offset with a timestamp at or after the one asked"
    # Past the last record the broker answers offset -1; kadm documents that it gives the end offset then.
    future = call("offsets", topic=topic, at=base_ts + 3_600_000)["after"]
    assert future == {str(p): 3 if client == "franz" else -1 for p in range(5)}, future

    assert call("delete", topic=topic)["error_code"] == 0
    wait_for(lambda: topic not in call("list-topics")["topics"], f"{topic} gone")
    assert call("describe", topic=topic)["topic"]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION
    assert call("delete", topic=topic)["error_code"] == UNKNOWN_TOPIC_OR_PARTITION


def test_kafka_go_conn(gobroker, topic_name):
    """kafka-go's Conn, the API its README starts with: CreateTopics and DeleteTopics on the
    controller's connection, ReadPartitions, a partition leader's WriteMessages (plain and
    zstd), ReadOffsets and ReadBatch."""
    lines = go("kafka-go-conn", "-brokers", gobroker.bootstrap, "-topic", topic_name, "-partitions", 2)
    steps = {l["step"]: l for l in lines if "step" in l}
    assert steps["controller"]["id"] == 1, steps["controller"]
    failed = {k: (v["error_code"], v["error"]) for k, v in steps.items() if v["error_code"] and k != "delete-topics-again"}
    assert not failed, failed
    # Conn.CreateTopics drops TOPIC_ALREADY_EXISTS on purpose ("idempotent operational semantics").
    assert steps["create-topics-again"]["error_code"] == 0
    # In Metadata's order, which Kafka does not fix (4.1 answered [1, 0]).
    assert sorted(steps["read-partitions"]["partitions"]) == [0, 1], steps["read-partitions"]
    assert steps["write-compressed-at"]["offset"] == 2
    assert (steps["read-offsets"]["first"], steps["read-offsets"]["last"]) == (0, 3)
    got = [go_rec(l) for l in steps["read-batch"]["records"]]
    assert [(r.offset, r.content()) for r in got] == [
        (0, (b"k0", b"conn #0", (("via", b"conn"),))), (1, (b"k1", b"conn #1", ())), (2, (b"k2", b"conn #2 zstd", ()))]
    assert steps["delete-topics-again"]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION
