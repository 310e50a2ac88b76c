"""Fjord's /metrics under real client traffic, parsed with prometheus_client's text parser:
counters move by exactly what the clients did, histograms count every request, errors are
counted by Kafka error name, and lag is the produced-minus-committed difference.

Fjord only: the reference Kafka has no HTTP listener (these tests skip against it).
"""

from __future__ import annotations

import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

RECORDS = 500
VALUE_BYTES = 100


def scrape(broker) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    with urllib.request.urlopen(broker.metrics_url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name, **labels) -> float:
    """Sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def wait_for(check, what, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


@pytest.fixture(scope="module")
def mb(start_broker):
    b = start_broker("metrics", **{"group.initial.rebalance.delay.ms": 0})
    if b.is_reference or not b.metrics_url:
        pytest.skip("the broker under test has no HTTP listener (the reference Kafka)")
    return b


def test_counters_and_histograms_follow_real_traffic(mb, topic_name):
    admin = AdminClient({"bootstrap.servers": mb.bootstrap})
    for f in admin.create_topics([NewTopic(topic_name, 2, 1)]).values():
        f.result(30)
    before = scrape(mb)

    p = Producer({"bootstrap.servers": mb.bootstrap, "linger.ms": 5, "acks": "all"})
    for i in range(RECORDS):
        p.produce(topic_name, value=b"x" * VALUE_BYTES, partition=i % 2)
    assert p.flush(30) == 0

    c = Consumer({"bootstrap.servers": mb.bootstrap, "group.id": f"{topic_name}-g",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic_name])
    got = 0
    deadline = time.monotonic() + 60
    while got < RECORDS and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    assert got == RECORDS
    c.commit(asynchronous=False)
    c.close()

    after = scrape(mb)
    # Exactly the records produced, and at least their payload in bytes (batch overhead on top).
    assert value(after, "fjord_messages_in_total", topic=topic_name) == RECORDS
    bytes_in = value(after, "fjord_bytes_in_total", topic=topic_name)
    assert RECORDS * VALUE_BYTES <= bytes_in < RECORDS * (VALUE_BYTES + 100), bytes_in
    # The consumer read every byte the producers wrote (no re-reads here: one member, no rebalance).
    assert value(after, "fjord_bytes_out_total", topic=topic_name) >= bytes_in
    # Produce requests: counted per version, and every one in the processing histogram.
    produces = total(after, "fjord_requests_total", api="Produce") - total(before, "fjord_requests_total", api="Produce")
    assert produces >= 1
    hist = (value(after, "fjord_request_processing_seconds_count", api="Produce")
            - value(before, "fjord_request_processing_seconds_count", api="Produce"))
    assert hist == produces
    # The group's join and commit went through the group APIs.
    for api in ("JoinGroup", "SyncGroup", "OffsetCommit", "OffsetFetch", "FindCoordinator"):
        assert total(after, "fjord_requests_total", api=api) > total(before, "fjord_requests_total", api=api), api
    # The histogram's buckets are cumulative and end at the count.
    inf = value(after, "fjord_request_processing_seconds_bucket", api="Produce", le="+Inf")
    assert inf == value(after, "fjord_request_processing_seconds_count", api="Produce")


def test_errors_are_counted_by_kafka_name(mb, topic_name):
    admin = AdminClient({"bootstrap.servers": mb.bootstrap})
    for f in admin.create_topics([NewTopic(topic_name, 1, 1)]).values():
        f.result(30)
    before = total(scrape(mb), "fjord_request_errors_total", api="CreateTopics", error="TOPIC_ALREADY_EXISTS")
    with pytest.raises(KafkaException):
        for f in admin.create_topics([NewTopic(topic_name, 1, 1)]).values():
            f.result(30)
    after = total(scrape(mb), "fjord_request_errors_total", api="CreateTopics", error="TOPIC_ALREADY_EXISTS")
    assert after == before + 1


def test_consumer_lag_is_produced_minus_committed(mb, topic_name):
    admin = AdminClient({"bootstrap.servers": mb.bootstrap})
    for f in admin.create_topics([NewTopic(topic_name, 1, 1)]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": mb.bootstrap})
    for _ in range(30):
        p.produce(topic_name, value=b"v", partition=0)
    assert p.flush(30) == 0
    group = f"{topic_name}-lag"
    c = Consumer({"bootstrap.servers": mb.bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic_name, 0, 12)], asynchronous=False)
    c.close()
    labels = {"group": group, "topic": topic_name, "partition": "0"}
    # The collector refreshes lag every few seconds.
    wait_for(lambda: value(scrape(mb), "fjord_consumer_group_lag", **labels) == 18, "lag 30 - 12 = 18")
    s = scrape(mb)
    assert value(s, "fjord_consumer_group_total_lag", group=group) == 18
    assert value(s, "fjord_consumer_group_lag_seconds", **labels) >= 0


def test_health_endpoints(mb):
    for path, body in (("/healthz", "ok"), ("/readyz", "ready")):
        with urllib.request.urlopen(mb.metrics_url + path, timeout=5) as r:
            assert r.status == 200 and r.read().decode().strip() == body
    samples = scrape(mb)
    assert value(samples, "fjord_up") == 1
    assert value(samples, "fjord_controller_is_leader") == 1
    assert value(samples, "fjord_offline_partitions") == 0
