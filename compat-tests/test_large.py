"""Records near and over the broker's message.max.bytes.

The broker runs with message.max.bytes=2000000; the clients' own limits (max.request.size,
message.max.bytes, fetch sizes) are raised well above it, so that the broker, not the client,
decides. A batch up to the limit is stored and read back by every client; a larger one is
refused with MESSAGE_TOO_LARGE and the broker carries on serving.
"""

import base64
import random

import pytest

from adminlib import make_admin
from clientlib import (CLIENTS, Rec, assert_ok, consume, kcat, produce, produce_confluent, produce_java)

LIMIT_BYTES = 2_000_000
#: Record batch header (61 B) plus one record's framing and a small key and header stay well
#: under this; the value is then "just under" the limit.
BATCH_OVERHEAD_BYTES = 200
JUST_UNDER_BYTES = LIMIT_BYTES - BATCH_OVERHEAD_BYTES
OVER_BYTES = LIMIT_BYTES + 100_000


def text_value(n: int, seed: str) -> bytes:
    """n bytes of random base64 text: incompressible enough, and kcat can send it as a line."""
    raw = random.Random(seed).randbytes(n)
    return base64.b64encode(raw)[:n]


@pytest.fixture(scope="module")
def big_broker(start_broker):
    return start_broker("large-records", **{"message.max.bytes": LIMIT_BYTES})


def test_topic_inherits_the_broker_limit(big_broker, new_topic):
    """A topic's max.message.bytes defaults to the broker's message.max.bytes."""
    topic = new_topic(big_broker, partitions=1)
    assert make_admin("java", big_broker.bootstrap).describe_configs(topic)["max.message.bytes"].value == str(LIMIT_BYTES)


@pytest.mark.parametrize("producer", CLIENTS)
def test_record_just_under_the_limit_round_trips(big_broker, new_topic, producer):
    topic = new_topic(big_broker, partitions=1)
    value = text_value(JUST_UNDER_BYTES, producer)
    rec = Rec(b"big", value, (("size", str(len(value)).encode()),), 0)
    acks = produce(producer, big_broker.bootstrap, topic, [rec], codec="none", large=True)
    assert_ok(acks)
    for reader in CLIENTS:
        got = consume(reader, big_broker.bootstrap, topic, 1, partition=0, large=True)
        assert len(got) == 1, f"{reader} read {len(got)} records"
        assert got[0].offset == 0 and got[0].key == b"big", reader
        assert got[0].value == value, f"{reader}: value of {len(got[0].value or b'')} bytes differs"


def test_over_the_limit_is_refused_confluent(big_broker, new_topic):
    topic = new_topic(big_broker, partitions=1)
    (ack,) = produce_confluent(big_broker.bootstrap, topic, [Rec(None, text_value(OVER_BYTES, "c"), (), 0)],
                               large=True)
    # The broker's error, carried in the delivery report (librdkafka's own size check would
    # have raised in produce() instead, as _MSG_SIZE_TOO_LARGE).
    assert ack.error == "MSG_SIZE_TOO_LARGE", ack
    assert_still_serving(big_broker, topic)


def test_over_the_limit_is_refused_java(big_broker, new_topic):
    topic = new_topic(big_broker, partitions=1)
    (ack,) = produce_java(big_broker.bootstrap, topic, [Rec(None, text_value(OVER_BYTES, "j"), (), 0)], large=True)
    assert ack.error == "RecordTooLargeException", ack
    # The client's own check says "... larger than ... max.request.size ..."; this came from the broker.
    assert "max.request.size" not in ack.message, ack.message
    assert_still_serving(big_broker, topic)


@pytest.mark.parametrize("producer", ["kafka-python", "aiokafka"])
def test_over_the_limit_is_refused_python(big_broker, new_topic, producer):
    topic = new_topic(big_broker, partitions=1)
    (ack,) = produce(producer, big_broker.bootstrap, topic, [Rec(None, text_value(OVER_BYTES, producer), (), 0)],
                     large=True)
    assert ack.error == "MessageSizeTooLargeError", ack
    assert_still_serving(big_broker, topic)


def test_over_the_limit_is_refused_kcat(big_broker, new_topic):
    topic = new_topic(big_broker, partitions=1)
    line = text_value(OVER_BYTES, "kcat") + b"\n"
    p = kcat("-P", "-b", big_broker.bootstrap, "-t", topic, "-p", 0, "-X", "message.max.bytes=8000000",
             input_bytes=line, check=False)
    assert p.returncode != 0, "kcat must report the failed delivery"
    assert b"too large" in p.stderr.lower(), p.stderr[-1000:]
    assert_still_serving(big_broker, topic)


def test_topic_max_message_bytes_override(big_broker, new_topic):
    """A topic's own max.message.bytes (here below the broker's) is the one enforced."""
    topic = new_topic(big_broker, partitions=1, configs={"max.message.bytes": 100_000})
    (ok,) = produce_confluent(big_broker.bootstrap, topic, [Rec(None, text_value(90_000, "ok"), (), 0)])
    assert ok.error is None and ok.offset == 0, ok
    (bad,) = produce_java(big_broker.bootstrap, topic, [Rec(None, text_value(150_000, "bad"), (), 0)])
    assert bad.error == "RecordTooLargeException", bad
    got = consume("kafka-python", big_broker.bootstrap, topic, 2, partition=0, timeout_s=3)
    assert [len(r.value) for r in got] == [90_000]


def assert_still_serving(broker, topic):
    """The refused record left no trace, and the next one lands at offset 0."""
    small = Rec(b"after", b"the refused record", (), 0)
    (ack,) = produce("java", broker.bootstrap, topic, [small])
    assert ack.error is None and ack.offset == 0, ack
    got = consume("confluent", broker.bootstrap, topic, 2, partition=0, timeout_s=3)
    assert [(r.offset, r.content()) for r in got] == [(0, small.content())]
