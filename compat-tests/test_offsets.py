"""ListOffsets (earliest, latest, by timestamp, max timestamp) and DeleteRecords.

By timestamp means: the first offset, in offset order, whose record timestamp is >= the target
(KIP-79), or none. Partition 1 has a record from the future in the middle, which makes
"first in offset order" and "max timestamp" (KIP-734) differ from "the nearest timestamp".
"""

import json
import time
import uuid

import pytest

from adminlib import ADMINS, OFFSET_OUT_OF_RANGE, KafkaCallError
from clientlib import CLIENTS, Rec, assert_ok, consume, kcat, produce
from offsetlib import delete_records, list_offsets_admin, offsets_for_times, watermarks


@pytest.fixture(scope="module")
def timed_topic(broker):
    """A 2-partition topic with known timestamps; shared by the read-only tests below."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"timed-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, 2, 1)])[name].result(30)
    # Ten minutes ago, so that base + 10 min stays within message.timestamp.after.max.ms (1 h).
    base = (int(time.time() * 1000) // 1000 - 600) * 1000
    p0 = [Rec(b"p0-%d" % i, b"v", (), 0, base + 1000 * i) for i in range(10)]
    p1_ts = [base, base + 1000, base + 600_000, base + 3000, base + 4000, base + 5000]
    p1 = [Rec(b"p1-%d" % i, b"v", (), 1, ts) for i, ts in enumerate(p1_ts)]
    assert_ok(produce("java", broker.bootstrap, name, p0 + p1, codec="gzip"))
    return name, base


# (partition, target timestamp offset from base) -> (offset, record timestamp offset) or None
BY_TIME = [
    ((0, -1), (0, 0)),
    ((0, 0), (0, 0)),
    ((0, 2500), (3, 3000)),
    ((0, 9000), (9, 9000)),
    ((0, 9001), None),
    ((1, 2000), (2, 600_000)),  # the future record comes first in offset order
    ((1, 3500), (2, 600_000)),
    ((1, 600_001), None),
]


@pytest.mark.parametrize("client", CLIENTS)
def test_offsets_for_times(broker, timed_topic, client):
    topic, base = timed_topic
    got, want = [], []
    for (partition, delta), expected in BY_TIME:
        r = offsets_for_times(client, broker.bootstrap, topic, partition, base + delta)
        if r is not None and r[1] is None and expected is not None:
            r = (r[0], None)  # this client reports no timestamp
            expected = (expected[0], None)
        elif expected is not None:
            expected = (expected[0], base + expected[1])
        got.append(((partition, delta), r))
        want.append(((partition, delta), expected))
    assert got == want


@pytest.mark.parametrize("client", CLIENTS)
def test_watermarks(broker, timed_topic, client):
    topic, _ = timed_topic
    assert watermarks(client, broker.bootstrap, topic, 0) == (0, 10)
    assert watermarks(client, broker.bootstrap, topic, 1) == (0, 6)


@pytest.mark.parametrize("client", ADMINS)
def test_list_offsets_admin(broker, timed_topic, client):
    """Admin ListOffsets: earliest/latest carry no timestamp (-1); max-timestamp (KIP-734) gives
    the offset and timestamp of the newest record, which in partition 1 is not the last one."""
    topic, base = timed_topic
    assert list_offsets_admin(client, broker.bootstrap, topic, 0, "earliest")[0] == 0
    assert list_offsets_admin(client, broker.bootstrap, topic, 0, "latest")[0] == 10
    assert list_offsets_admin(client, broker.bootstrap, topic, 0, "max-timestamp") == (9, base + 9000)
    assert list_offsets_admin(client, broker.bootstrap, topic, 1, "max-timestamp") == (2, base + 600_000)
    assert list_offsets_admin(client, broker.bootstrap, topic, 0, base + 2500) == (3, base + 3000)
    assert list_offsets_admin(client, broker.bootstrap, topic, 1, base + 600_001)[0] == -1


def test_kcat_consume_from_timestamp(broker, timed_topic):
    """kcat -o s@TS starts at the offset ListOffsets gives for TS."""
    topic, base = timed_topic
    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", 0, "-o", f"s@{base + 6500}", "-e", "-J", "-q").stdout
    got = [json.loads(l) for l in out.decode().splitlines()]
    assert [(d["offset"], d["ts"]) for d in got] == [(i, base + 1000 * i) for i in range(7, 10)]


# ------------------------------------------------------------------------------ DeleteRecords

@pytest.mark.parametrize("client", ADMINS)
def test_delete_records(broker, new_topic, client):
    topic = new_topic(broker, partitions=2)
    records = [Rec(b"k%d" % i, b"value %d" % i, (), 0) for i in range(10)]
    assert_ok(produce("confluent", broker.bootstrap, topic, records, codec="lz4"))

    assert delete_records(client, broker.bootstrap, topic, 0, 4) == 4
    for reader in ("confluent", "kafka-python", "java"):
        assert watermarks(reader, broker.bootstrap, topic, 0) == (4, 10), reader
    assert list_offsets_admin("java", broker.bootstrap, topic, 0, "earliest")[0] == 4

    want = [(i, records[i].content()) for i in range(4, 10)]
    for reader in CLIENTS:
        got = consume(reader, broker.bootstrap, topic, 6, partition=0)
        assert [(r.offset, r.content()) for r in got] == want, reader
    # Below the low watermark: OFFSET_OUT_OF_RANGE, and the consumer's reset policy (earliest)
    # takes it to the new start.
    for reader in ("confluent", "java", "kafka-python"):
        got = consume(reader, broker.bootstrap, topic, 2, partition=0, offset=1)
        assert [r.offset for r in got] == [4, 5], reader

    with pytest.raises(KafkaCallError) as e:
        delete_records(client, broker.bootstrap, topic, 0, 11)
    assert e.value.code == OFFSET_OUT_OF_RANGE, e.value
    assert delete_records(client, broker.bootstrap, topic, 0, 3) == 4, "deleting below the low watermark changes nothing"

    # -1 means "up to the high watermark": everything goes, and offsets carry on from there.
    assert delete_records(client, broker.bootstrap, topic, 0, -1) == 10
    assert watermarks("java", broker.bootstrap, topic, 0) == (10, 10)
    assert consume("confluent", broker.bootstrap, topic, 1, partition=0, timeout_s=2) == []
    acks = produce("kafka-python", broker.bootstrap, topic, [Rec(b"after", b"delete", (), 0)])
    assert [a.offset for a in acks] == [10]
    assert watermarks("java", broker.bootstrap, topic, 1) == (0, 0), "the other partition is untouched"
