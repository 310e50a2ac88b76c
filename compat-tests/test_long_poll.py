"""Fetch long polling: a consumer waiting on an empty partition gets a new record at once.

Each consumer lets the broker hold a fetch for LONG_WAIT_MS, and counts as waiting once its first
fetch has come back empty (librdkafka's partition EOF, kafka-python's and aiokafka's known high
watermark, the Java client's fetch-total metric, kcat's "Reached end of topic"): from then on it
sits in its next fetch. A record produced then must arrive within ARRIVAL_BOUND_S of its ack; a
broker that answers parked fetches only when their wait runs out takes up to LONG_WAIT_MS. A
broker that never waits (answers empty at once) would still pass these, so the wire tests check
the wait itself: an empty fetch is held for max_wait_ms, and min_bytes is honoured."""

import json
import subprocess
import threading
import time

import pytest

from clientlib import (CLIENTS, JAVA_CLASSPATH, KCAT, Rec, assert_ok, confluent_consumer_conf, java_record,
                       kafka_python_consumer, kcat_json_lines, kcat_record, produce)
from wire import API_FETCH, Conn, api_versions, fetch, pick_version, record_batches, wait_fetchable

#: How long the clients let the broker hold an empty fetch. Each consumer counts as waiting only
#: once its first (empty) fetch has come back, which on a long-polling broker takes this long.
LONG_WAIT_MS = 6_000
#: A record produced while a consumer waits must reach it within this long after the ack.
ARRIVAL_BOUND_S = 3.0
#: How long a waiting consumer gets, overall, before the test gives up on it.
WAITER_TIMEOUT_S = 45.0


class Waiter:
    """A consumer of one client, started on an empty partition in the background."""

    def __init__(self):
        self.ready = threading.Event()
        self.records: list[Rec] = []
        self.arrived_at: float | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.proc: subprocess.Popen | None = None

    def got(self, rec: Rec):
        self.records.append(rec)
        if self.arrived_at is None:
            self.arrived_at = time.monotonic()

    def run(self, fn):
        def wrapped():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - reported by the test thread
                self.error = e
                self.ready.set()

        self.thread = threading.Thread(target=wrapped, daemon=True)
        self.thread.start()
        return self

    def join(self, timeout_s):
        self.thread.join(timeout_s)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.error:
            raise self.error


def wait_confluent(bootstrap, topic):
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    w = Waiter()

    def go():
        c = Consumer(confluent_consumer_conf(bootstrap, **{"fetch.wait.max.ms": LONG_WAIT_MS,
                                                           "enable.partition.eof": True}))
        try:
            c.assign([TopicPartition(topic, 0, 0)])
            deadline = time.monotonic() + WAITER_TIMEOUT_S
            while not w.records and time.monotonic() < deadline:
                m = c.poll(0.05)
                if m is not None and m.error() and m.error().code() == KafkaError._PARTITION_EOF:
                    w.ready.set()  # its first fetch came back empty: now it waits in the next one
                elif m is not None and not m.error():
                    w.got(Rec(m.key(), m.value(), tuple(m.headers() or ()), m.partition(), m.timestamp()[1], m.offset()))
        finally:
            c.close()

    return w.run(go)


def wait_kafka_python(bootstrap, topic):
    from kafka import TopicPartition

    w = Waiter()

    def go():
        c = kafka_python_consumer(bootstrap, fetch_max_wait_ms=LONG_WAIT_MS, request_timeout_ms=LONG_WAIT_MS + 15000)
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            c.seek(tp, 0)
            deadline = time.monotonic() + WAITER_TIMEOUT_S
            while not w.records and time.monotonic() < deadline:
                batch = c.poll(timeout_ms=50)
                if c.highwater(tp) is not None:  # known once a fetch response came back
                    w.ready.set()
                for m in batch.get(tp, []):
                    w.got(Rec(m.key, m.value, tuple(m.headers), m.partition, m.timestamp, m.offset))
        finally:
            c.close()

    return w.run(go)


def wait_aiokafka(bootstrap, topic):
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    w = Waiter()

    async def consume():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_wait_ms=LONG_WAIT_MS, request_timeout_ms=LONG_WAIT_MS + 15000)
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            c.seek(tp, 0)
            deadline = time.monotonic() + WAITER_TIMEOUT_S
            while not w.records and time.monotonic() < deadline:
                batch = await c.getmany(tp, timeout_ms=50)
                if c.highwater(tp) is not None:  # known once a fetch response came back
                    w.ready.set()
                for m in batch.get(tp, []):
                    w.got(Rec(m.key, m.value, tuple(m.headers), m.partition, m.timestamp, m.offset))
        finally:
            await c.stop()

    return w.run(lambda: asyncio.run(consume()))


def wait_java(bootstrap, topic):
    w = Waiter()
    w.proc = subprocess.Popen(
        ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", JAVA_CLASSPATH, "dev.fjord.compat.Cli",
         "consume", "--bootstrap", bootstrap, "--topic", topic, "--partition", "0", "--from-offset", "0",
         "--count", "1", "--timeout-ms", str(int(WAITER_TIMEOUT_S * 1000)), "--announce",
         "-X", f"fetch.max.wait.ms={LONG_WAIT_MS}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def go():
        for line in w.proc.stdout:
            d = json.loads(line)
            if d.get("polling"):
                w.ready.set()
            elif "offset" in d:
                w.got(java_record(d))
        w.proc.wait(10)
        if w.proc.returncode != 0:
            raise AssertionError(f"java consumer exited {w.proc.returncode}: {w.proc.stderr.read()[-2000:]}")

    return w.run(go)


def wait_kcat(bootstrap, topic):
    w = Waiter()
    # Without -q kcat says "Reached end of topic" on stderr once its first fetch came back empty.
    w.proc = subprocess.Popen(
        [KCAT, "-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "0", "-c", "1", "-J",
         "-X", f"fetch.wait.max.ms={LONG_WAIT_MS}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def watch_stderr():
        for line in w.proc.stderr:
            if b"Reached end of topic" in line:
                w.ready.set()

    threading.Thread(target=watch_stderr, daemon=True).start()

    def go():
        for line in w.proc.stdout:
            for d in kcat_json_lines(line):
                w.got(kcat_record(d))
        w.proc.wait(10)

    return w.run(go)


WAITERS = {
    "confluent": wait_confluent,
    "kafka-python": wait_kafka_python,
    "aiokafka": wait_aiokafka,
    "java": wait_java,
    "kcat": wait_kcat,
}


@pytest.mark.parametrize("client", CLIENTS)
def test_waiting_consumer_gets_new_record(broker, new_topic, client):
    topic = new_topic(broker, partitions=1)
    w = WAITERS[client](broker.bootstrap, topic)
    assert w.ready.wait(LONG_WAIT_MS / 1000 + 20), f"{client} consumer never got its first fetch response"
    if w.error:
        raise w.error
    assert not w.records, "the partition was empty"

    record = Rec(b"wake", b"up", (("h", b"1"),), 0)
    (ack,) = produce("confluent", broker.bootstrap, topic, [record])
    acked_at = time.monotonic()
    assert ack.error is None and ack.offset == 0, ack

    w.join(WAITER_TIMEOUT_S + 15)
    assert [(r.offset, r.content()) for r in w.records] == [(0, record.content())]
    delay = w.arrived_at - acked_at
    assert delay < ARRIVAL_BOUND_S, (
        f"{client} got the record {delay:.1f}s after the produce was acknowledged: the broker held "
        f"the fetch instead of answering when data arrived (fetch max wait {LONG_WAIT_MS} ms)")


# ------------------------------------------------------------------------------------- wire

def fetch_version(conn):
    return pick_version(api_versions(conn).ranges, API_FETCH, range(4, 13))


def test_empty_fetch_waits_for_max_wait(broker, new_topic):
    """Nothing to return: the broker holds the fetch for max_wait_ms (not less, not forever)."""
    topic = new_topic(broker, partitions=1)
    wait_fetchable(broker.bootstrap, topic, 1)
    with Conn(broker.bootstrap) as c:
        v = fetch_version(c)
        start = time.monotonic()
        err, p = fetch(c, v, topic, 0, 0, max_wait_ms=1500)
        took = time.monotonic() - start
    assert (err, p.error_code, p.high_watermark) == (0, 0, 0)
    assert not record_batches(p.records)
    assert 1.2 <= took <= 6.0, f"an empty fetch with max_wait_ms=1500 took {took:.2f}s"


def test_parked_fetch_returns_when_data_arrives(broker, new_topic):
    topic = new_topic(broker, partitions=1)
    wait_fetchable(broker.bootstrap, topic, 1)
    result = {}

    def long_fetch():
        with Conn(broker.bootstrap) as c:
            v = fetch_version(c)
            result["sent"] = time.monotonic()
            result["response"] = fetch(c, v, topic, 0, 0, max_wait_ms=LONG_WAIT_MS)
            result["done"] = time.monotonic()

    t = threading.Thread(target=long_fetch, daemon=True)
    t.start()
    # The fetch goes out on an open connection; the produce below needs a new client, a
    # connection and Metadata first, so the fetch is parked before the record lands.
    (ack,) = produce("java", broker.bootstrap, topic, [Rec(b"k", b"v", (), 0)])
    acked_at = time.monotonic()
    assert ack.error is None
    t.join(LONG_WAIT_MS / 1000 + 15)
    err, p = result["response"]
    assert (err, p.error_code) == (0, 0)
    assert p.high_watermark == 1
    assert [b.record_count for b in record_batches(p.records)] == [1]
    assert result["done"] - acked_at < ARRIVAL_BOUND_S, \
        f"the parked fetch answered {result['done'] - acked_at:.1f}s after the produce ack"


def test_fetch_min_bytes_waits_for_enough_data(broker, new_topic):
    """min_bytes larger than what is there: the broker waits max_wait_ms, then returns what it has."""
    topic = new_topic(broker, partitions=1)
    assert_ok(produce("confluent", broker.bootstrap, topic, [Rec(None, b"small", (), 0)]))
    with Conn(broker.bootstrap) as c:
        v = fetch_version(c)
        start = time.monotonic()
        err, p = fetch(c, v, topic, 0, 0, max_wait_ms=1500, min_bytes=1 << 20)
        took = time.monotonic() - start
    assert (err, p.error_code, p.high_watermark) == (0, 0, 1)
    assert [b.record_count for b in record_batches(p.records)] == [1]
    assert 1.2 <= took <= 6.0, f"min_bytes=1MiB over 1 small record returned after {took:.2f}s"
