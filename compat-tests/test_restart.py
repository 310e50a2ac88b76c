"""Durability across restarts: every acknowledged record, topic, topic id and config survives a
clean stop (SIGTERM) and a crash (SIGKILL), and the log carries on at the right offset.

Each test has a broker of its own, restarted on the same log dir and port.
"""

import threading
import time

import pytest

from adminlib import make_admin
from clientlib import (Ack, Rec, assert_ok, confluent_producer_conf, consume, expected_layout, layout_mismatch,
                       produce)
from conftest import wait_for
from offsetlib import delete_records, watermarks

pytestmark = pytest.mark.restart

READERS = ("confluent", "java", "kafka-python")


def fill(b, topic, partitions=3, per_client=60):
    """acks=all from two clients with different codecs, so the log holds many batch shapes."""
    first = [Rec(b"c-%d" % i, b"confluent gzip %d" % i, (("n", b"%d" % i),), i % partitions) for i in range(per_client)]
    second = [Rec(b"j-%d" % i, b"java zstd %d" % i, (), i % partitions) for i in range(per_client)]
    acks = produce("confluent", b.bootstrap, topic, first, codec="gzip", acks="all")
    acks += produce("java", b.bootstrap, topic, second, codec="zstd", acks="all")
    assert_ok(acks)
    return first + second, acks


def assert_all_there(b, topic, records, acks):
    expected = expected_layout(records, acks)
    for p, rows in expected.items():
        assert watermarks("java", b.bootstrap, topic, p) == (0, len(rows)), f"partition {p}"
    for reader in READERS:
        got = consume(reader, b.bootstrap, topic, len(records))
        assert layout_mismatch(got, expected) is None, f"{reader}: {layout_mismatch(got, expected)}"
    return expected


def assert_log_continues(b, topic, expected):
    """New records go after the old ones: no offset is reused."""
    more = [Rec(b"after", b"restart", (), p) for p in sorted(expected)]
    acks = produce("kafka-python", b.bootstrap, topic, more)
    assert [(a.partition, a.offset) for a in acks] == [(p, len(expected[p])) for p in sorted(expected)]


def test_kill_9_keeps_acknowledged_records(own_broker, topic_name):
    b = own_broker()
    admin = make_admin("java", b.bootstrap)
    admin.create_topic(topic_name, 3, configs={"retention.ms": 86_400_000})
    wait_for(lambda: len(admin.describe_topic(topic_name).leaders) == 3, "the topic")
    before = admin.describe_topic(topic_name)
    records, acks = fill(b, topic_name)

    b.kill()
    b.start()

    after = admin.describe_topic(topic_name)
    assert after.topic_id == before.topic_id, "the topic id survives"
    assert after.leaders == {0: b.node_id, 1: b.node_id, 2: b.node_id}
    assert admin.describe_configs(topic_name)["retention.ms"].value == "86400000"
    expected = assert_all_there(b, topic_name, records, acks)
    assert_log_continues(b, topic_name, expected)


def test_clean_restart_keeps_everything(own_broker, topic_name):
    b = own_broker()
    admin = make_admin("java", b.bootstrap)
    admin.create_topic(topic_name, 3, configs={"retention.ms": 86_400_000})
    gone, trimmed = f"{topic_name}-deleted", f"{topic_name}-trimmed"
    admin.create_topic(gone, 1)
    admin.create_topic(trimmed, 1)
    wait_for(lambda: {topic_name, gone, trimmed} <= admin.list_topics(), "the topics")
    before = admin.describe_topic(topic_name)
    records, acks = fill(b, topic_name)
    admin.alter_configs(topic_name, set_={"cleanup.policy": "delete", "max.message.bytes": 123_456})
    admin.delete_topic(gone)
    wait_for(lambda: gone not in admin.list_topics(), "the deleted topic gone")
    small = [Rec(None, b"%d" % i, (), 0) for i in range(10)]
    assert_ok(produce("confluent", b.bootstrap, trimmed, small))
    assert delete_records("java", b.bootstrap, trimmed, 0, 4) == 4

    started = time.monotonic()
    rc = b.stop()
    # Exit status 0, or 143 for a JVM that ran its shutdown hooks; -15 would mean SIGTERM killed
    # the process without it handling the signal.
    assert rc in (0, 143), f"exit status {rc} after SIGTERM"
    stop_s = time.monotonic() - started
    b.start()

    after = admin.describe_topic(topic_name)
    assert after.topic_id == before.topic_id
    configs = admin.describe_configs(topic_name)
    assert configs["retention.ms"].value == "86400000"
    assert configs["max.message.bytes"].value == "123456"
    assert configs["max.message.bytes"].source == "DYNAMIC_TOPIC_CONFIG"
    assert gone not in admin.list_topics(), "a deleted topic stays deleted"
    assert watermarks("confluent", b.bootstrap, trimmed, 0) == (4, 10), "DeleteRecords' low watermark survives"
    got = consume("java", b.bootstrap, trimmed, 6, partition=0)
    assert [(r.offset, r.value) for r in got] == [(i, b"%d" % i) for i in range(4, 10)]
    expected = assert_all_there(b, topic_name, records, acks)
    assert_log_continues(b, topic_name, expected)
    assert stop_s < 30


def test_kill_9_during_produce_keeps_every_ack(own_broker, topic_name):
    """SIGKILL in the middle of a stream of acks=all produces: every record acknowledged before
    the kill is there after the restart, at its acknowledged offset, and the log has no holes."""
    from confluent_kafka import Producer

    b = own_broker()
    admin = make_admin("confluent", b.bootstrap)
    admin.create_topic(topic_name, 3)
    wait_for(lambda: len(admin.describe_topic(topic_name).leaders) == 3, "the topic")

    acked: dict[int, Ack] = {}
    sent: dict[int, Rec] = {}
    stop = threading.Event()
    p = Producer(confluent_producer_conf(b.bootstrap, codec="lz4", acks="all", **{"linger.ms": 2,
                                                                                    "message.timeout.ms": 5000}))

    def on_delivery(i, err, msg):
        if err is None:
            acked[i] = Ack(msg.partition(), msg.offset())

    def produce_forever():
        i = 0
        while not stop.is_set() and i < 200_000:
            r = Rec(b"k%d" % i, b"record %d" % i, (), i % 3)
            sent[i] = r
            try:
                p.produce(topic_name, value=r.value, key=r.key, partition=r.partition,
                          on_delivery=lambda err, msg, i=i: on_delivery(i, err, msg))
            except BufferError:
                p.poll(0.05)
                continue
            p.poll(0)
            i += 1
            if i % 50 == 0:
                time.sleep(0.005)  # a steady stream, not one huge burst

    t = threading.Thread(target=produce_forever, daemon=True)
    t.start()
    wait_for(lambda: len(acked) >= 1000, "1000 acknowledged records before the kill", timeout_s=60)
    b.kill()
    stop.set()
    t.join(10)
    # Whatever was not acknowledged by now may or may not be in the log: forget it.
    p.purge(in_queue=True, in_flight=True)
    p.flush(10)
    snapshot = dict(acked)
    b.start()

    for part in range(3):
        mine = {a.offset: sent[i] for i, a in snapshot.items() if a.partition == part}
        low, high = watermarks("java", b.bootstrap, topic_name, part)
        assert low == 0 and high >= (max(mine) + 1 if mine else 0), (part, low, high, len(mine))
        got = consume("confluent", b.bootstrap, topic_name, high, partition=part, timeout_s=60)
        assert [r.offset for r in got] == list(range(high)), f"partition {part}: offsets not dense"
        missing = [o for o, r in mine.items() if got[o].content() != r.content()]
        assert not missing, f"partition {part}: acknowledged offsets {missing[:10]} lost or changed"
