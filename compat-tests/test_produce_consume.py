"""Produce with each client and codec, read back with every client: exact content, order, offsets.

Covers Produce (acks 0/1/all, codecs none/gzip/snappy/lz4/zstd, keys, null keys, null values,
headers, explicit partitions and timestamps) and Fetch (assign + seek to an offset, including into
the middle of a compressed batch) across confluent-kafka (librdkafka), kafka-python, aiokafka, the
Java client and kcat.
"""

import random
import time

import pytest

from clientlib import (CLIENTS, CODECS, Rec, assert_ok, by_partition, consume, expected_layout,
                       kcat, kcat_json_lines, layout_mismatch, produce, sample_records)
from conftest import wait_for
from wire import CODEC_IDS, fetch_batches


def stored_batches(bootstrap, topic, partition):
    """The record batches as the broker serves them (raw Fetch), to see the codec really used."""
    try:
        return fetch_batches(bootstrap, topic, partition)
    except AssertionError as e:
        if "this module speaks" not in str(e):
            raise
    # The broker only serves Fetch v13+, which names topics by id.
    import base64

    from adminlib import make_admin

    tid = make_admin("java", bootstrap).describe_topic(topic).topic_id
    return fetch_batches(bootstrap, topic, partition, topic_id=base64.urlsafe_b64decode(tid + "=="))


def read_back_everywhere(bootstrap, topic, expected, consumers=CLIENTS):
    """Consumes the whole topic with each consumer; returns {consumer: records} after checking
    that each read exactly `expected` and that all agree on every record's timestamp."""
    count = sum(len(v) for v in expected.values())
    problems, seen = [], {}
    for consumer in consumers:
        got = consume(consumer, bootstrap, topic, count)
        seen[consumer] = got
        diff = layout_mismatch(got, expected)
        if diff:
            problems.append(f"{consumer}: {diff}")
    stamps = {c: {(r.partition, r.offset): r.timestamp for r in got} for c, got in seen.items()}
    first = consumers[0]
    for c in consumers[1:]:
        if stamps[c] != stamps[first] and not any(p.startswith(c) for p in problems):
            problems.append(f"{c}: timestamps differ from {first}'s")
    assert not problems, "\n".join(problems)
    return seen


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("producer", CLIENTS)
def test_round_trip_matrix(broker, new_topic, producer, codec):
    """One producer, one codec; all five clients read back the same records in the same order."""
    topic = new_topic(broker, partitions=3)
    records = sample_records(f"{producer}/{codec}", partitions=3, per_partition=6,
                             kcat_compatible=(producer == "kcat"))
    before_ms = int(time.time() * 1000)
    acks = produce(producer, broker.bootstrap, topic, records, codec=codec, acks="all")
    after_ms = int(time.time() * 1000)
    assert_ok(acks)
    expected = expected_layout(records, acks)
    # The producer really used the codec. librdkafka < 2.8 (kcat here) decides whether the broker
    # can take compressed batches from the Produce versions it advertises and silently sends
    # uncompressed ones when Produce v0 is missing (KAFKA-18659, librdkafka #4956). librdkafka
    # also sends a batch uncompressed when compressing does not make it smaller (a lone record),
    # so: no other codec, and the asked one at least once.
    stored = set()
    for p, rows in expected.items():
        batches = stored_batches(broker.bootstrap, topic, p)
        assert sum(b.record_count for b in batches) == len(rows), batches
        assert {b.magic for b in batches} == {2}, batches
        stored |= {b.codec for b in batches}
    assert CODEC_IDS[codec] in stored and stored <= {0, CODEC_IDS[codec]}, \
        f"the broker stored batches with codecs {sorted(stored)}, the producer was asked for {codec} " \
        f"({CODEC_IDS[codec]}); librdkafka picks codecs from ApiVersions: see test_api_versions_what_librdkafka_probes"
    seen = read_back_everywhere(broker.bootstrap, topic, expected)
    # No timestamp was given, so each record carries the producer's clock (CreateTime).
    for r in seen["java"]:
        assert before_ms - 5000 <= r.timestamp <= after_ms + 5000, r


@pytest.mark.parametrize("producer", ["confluent", "kafka-python", "aiokafka", "java"])
def test_binary_nulls_empties_and_timestamps(broker, new_topic, producer):
    """Arbitrary bytes (NUL, 0xff, newlines), empty vs null keys and values, null header values
    and explicit CreateTime timestamps survive a round trip through every client."""
    # Timestamps from 2023 are past the default retention.ms: a retention pass of the shared
    # broker landing between produce and read-back would delete them (as Kafka's would).
    topic = new_topic(broker, partitions=2, configs={"retention.ms": "-1"})
    rnd = random.Random(f"binary-{producer}")
    base_ts = 1_700_000_000_000
    records = []
    for i in range(12):
        key = [None, b"", b"\x00\xff\n\t" + bytes([i]), rnd.randbytes(8)][i % 4]
        value = [rnd.randbytes(300), None, b"", b"line1\nline2\x00\xfe"][i % 4]
        headers = (("bin", rnd.randbytes(5)), ("", b"empty-name"))
        if producer != "kafka-python":  # it refuses None header values (FINDINGS.md)
            headers += (("null-value", None),)
        records.append(Rec(key, value, headers, i % 2, base_ts + 1000 * i))
    acks = produce(producer, broker.bootstrap, topic, records, codec="lz4")
    assert_ok(acks)
    if producer != "aiokafka":  # it reports the batch's first timestamp for every record (FINDINGS.md)
        assert [a.timestamp for a in acks] == [r.timestamp for r in records], "acks must echo CreateTime"
    expected = expected_layout(records, acks)
    seen = read_back_everywhere(broker.bootstrap, topic, expected, consumers=("confluent", "kafka-python", "aiokafka", "java"))
    for r in seen["java"]:
        assert r.timestamp == base_ts + 1000 * (2 * r.offset + r.partition)

    # kcat -J prints null for null and cannot carry a null header value or an empty key apart
    # from the payload; check what it can show: payload bytes, null vs empty payload.
    out = kcat_json_lines(kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", 0, "-o", "beginning",
                               "-c", 6, "-J", "-q").stdout)
    want = [r for r in records if r.partition == 0]
    assert [(d["offset"], d["payload"] is None) for d in out] == [(i, r.value is None) for i, r in enumerate(want)]
    assert [d["payload"].encode("utf-8", "surrogateescape") for d in out if d["payload"] is not None] == \
        [r.value for r in want if r.value is not None]
    assert [d["ts"] for d in out] == [r.timestamp for r in want]


@pytest.mark.parametrize("acks", ["0", "1", "all"])
@pytest.mark.parametrize("client", CLIENTS)
def test_acks(broker, new_topic, client, acks):
    """Each acks level delivers; acks=1/all report offsets, acks=0 gets no offset back."""
    topic = new_topic(broker, partitions=2)
    if acks == "0":
        # Kafka lists a new partition in Metadata a moment before its broker leads it; a produce
        # in between fails NOT_LEADER_OR_FOLLOWER, which with acks=0 only closes the connection:
        # the records are lost, as acks=0 allows. ListOffsets answers only once the broker leads.
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "fjord-compat-unused"})
        try:
            wait_for(lambda: all(c.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)
                                 for p in range(2)), f"{topic}'s partitions led")
        finally:
            c.close()
    records = sample_records(f"acks-{acks}", partitions=2, per_partition=5, kcat_compatible=(client == "kcat"))
    result = produce(client, broker.bootstrap, topic, records, codec="snappy", acks=acks)
    assert_ok(result)
    if acks == "0":
        # No response, so no offset (kafka-python makes some up, FINDINGS.md): ignore them.
        result = [a.__class__(None, None, None) for a in result]
    elif client != "kcat":
        assert all(a.offset is not None and a.offset >= 0 for a in result), result
    expected = expected_layout(records, result)
    got = consume(client, broker.bootstrap, topic, len(records))
    assert layout_mismatch(got, expected) is None, layout_mismatch(got, expected)


@pytest.mark.parametrize("codec", ["none", "zstd"])
@pytest.mark.parametrize("client", CLIENTS)
def test_consume_from_offset(broker, new_topic, client, codec):
    """assign + seek (kcat -o N) into the middle of one batch: the broker may return the whole
    batch, the client must start exactly at the asked offset. Seeking to the high watermark
    reads nothing; kcat's relative -o -3 reads the last three."""
    topic = new_topic(broker, partitions=2)
    records = [Rec(f"k{i}".encode(), f"value {i}".encode(), (("i", str(i).encode()),), 1) for i in range(10)]
    # A long linger puts all ten in one batch: the seek lands inside a (compressed) batch.
    acks = produce("java", broker.bootstrap, topic, records, codec=codec, **{"linger.ms": 200})
    assert_ok(acks)
    assert [a.offset for a in acks] == list(range(10))

    got = consume(client, broker.bootstrap, topic, 4, partition=1, offset=6)
    assert [(r.offset, r.content()) for r in got] == [(i, records[i].content()) for i in range(6, 10)]

    got = consume(client, broker.bootstrap, topic, 1, partition=1, offset=10, timeout_s=2)
    assert got == [], "nothing lies at or past the high watermark"
    got = consume(client, broker.bootstrap, topic, 1, partition=0, offset=0, timeout_s=2)
    assert got == [], "partition 0 is empty"

    if client == "kcat":
        out = kcat_json_lines(kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", 1, "-o", -3, "-e", "-J", "-q").stdout)
        assert [d["offset"] for d in out] == [7, 8, 9]
        assert [d["payload"] for d in out] == ["value 7", "value 8", "value 9"]


def test_many_batches_and_partitions_keep_order(broker, new_topic):
    """2,000 records in many small batches over 4 partitions (the default partitioner picks by
    key): every client reads each partition in exactly produce order."""
    topic = new_topic(broker, partitions=4)
    records = [Rec(f"user-{i % 37}".encode(), f"event {i}".encode()) for i in range(2000)]
    acks = produce("confluent", broker.bootstrap, topic, records, codec="zstd", **{"batch.num.messages": 50})
    assert_ok(acks)
    parts = by_partition(Rec(r.key, r.value, r.headers, a.partition, offset=a.offset) for r, a in zip(records, acks))
    assert len(parts) > 1, "keys spread over several partitions"
    # Same key, same partition: the partitioner and the broker agree on the partition count.
    key_part = {}
    for r, a in zip(records, acks):
        assert key_part.setdefault(r.key, a.partition) == a.partition
    expected = {p: [(r.offset, r.content()) for r in rs] for p, rs in parts.items()}
    for p, rows in expected.items():
        assert [o for o, _ in rows] == list(range(len(rows))), f"partition {p} offsets not dense"
    read_back_everywhere(broker.bootstrap, topic, expected)


def test_java_cli_generated_records(broker, new_topic):
    """The Java CLI's own record generator (produce --count, for use by hand) makes exactly the
    records its help describes, and they read back through librdkafka."""
    from clientlib import java

    topic = new_topic(broker, partitions=2)
    out = java("produce", "--bootstrap", broker.bootstrap, "--topic", topic, "--codec", "gzip", "--acks", "all",
               "--count", 6, "--keyed", "--headers", "--null-values", "--size", 40, "--partition", 1)
    assert [(l["partition"], l["offset"]) for l in out] == [(1, i) for i in range(6)]
    want = [(i, (f"key-{i}".encode(),
                 None if i % 2 == 1 else bytes((i * 31 + j) % 251 for j in range(40)),
                 (("h-index", str(i).encode()), ("h-client", b"java")))) for i in range(6)]
    got = consume("confluent", broker.bootstrap, topic, 6, partition=1)
    assert [(r.offset, r.content()) for r in got] == want
